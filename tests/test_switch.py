"""Which implementation is imported, and the transport fallback."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import redset
import redset._wire
from redset import SortedSet, TimeSortedSet, ScheduledSet


def _probe(env_extra: dict) -> str:
    env = dict(os.environ)
    env.pop("REDSET_NO_EXTENSIONS", None)
    env.update(env_extra)
    code = "import redset, redset._wire as w; print(redset.USE_EXTENSIONS, w.impl.__name__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.c_extension
def test_compiled_module_is_imported_by_default():
    assert _probe({}).split() == ["True", "redset._wire_c"]


def test_no_extensions_env_forces_pure_python():
    assert _probe({"REDSET_NO_EXTENSIONS": "1"}).split() == ["False", "redset._wire_py"]


@pytest.mark.c_extension
def test_twins_export_the_same_names():
    compiled = redset._wire.compiled
    assert compiled is not None, "the compiled module redset._wire_c is not built"
    assert sorted(redset._wire.pure.__all__) == sorted(compiled.__all__)
    for name in redset._wire.pure.__all__:
        assert hasattr(compiled, name), name


class Wrapper:
    """A client that is not a redis.Redis: redset must use its public API."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("cls", [SortedSet, TimeSortedSet, ScheduledSet])
def test_client_driver_through_a_wrapper(r, cls):
    from redset._io.sync import ClientDriver

    s = cls(Wrapper(r), "q")
    assert isinstance(s._io, ClientDriver)
    assert s.add_many(["b", "a", "c"], [2, 1, 3]) == 3
    assert s.add("d", 4) == 4
    assert len(s) == 4 and "a" in s and s.score("b") == 2.0
    assert s.peek() == "a" and s.peek_score() == 1.0
    assert s.pop() == "a"
    assert s.take(2) == ["b", "c"]
    assert [x for b in s.drain(1) for x in b] == ["d"]
    with pytest.raises(TypeError, match="item 1"):
        s.add_many(["x", None], [1, 2])
    assert s.discard("zz") is False and not s.clear()


@pytest.mark.parametrize("cls", [SortedSet, TimeSortedSet, ScheduledSet])
def test_client_driver_waits_and_leases(r, cls):
    s = cls(Wrapper(r), "q")
    t0 = time.monotonic()
    assert s.take(2, timeout=0.3) == []  # a wait: blocking or sleeping in slices
    assert time.monotonic() - t0 >= 0.25
    s.add("d", 1)
    (lease,) = s.take(1, lease=30)
    assert lease.item == "d" and s.in_flight() == 1
    lease.nack()
    with s.consumer(lease=30, timeout=0.2) as items:
        assert list(items) == ["d"]
    assert s.in_flight() == 0 and len(s) == 0


@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_a_fresh_connection_is_read_from_the_socket(server, parser):
    """Pops are read straight from the socket unless the parser holds bytes:
    a clean connection must not look as if it did (that silently turned the
    fast path off once: a hiredis scratch buffer was taken for data)."""
    import asyncio

    import redis.asyncio
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser, _HiredisParser, _RESP2Parser

    from redset._io.replies import parser_holds_data

    sync_cls, async_cls = {"hiredis": (_HiredisParser, _AsyncHiredisParser),
                           "python": (_RESP2Parser, _AsyncRESP2Parser)}[parser]
    client = redis.Redis.from_url(server.url, parser_class=sync_cls, protocol=2)
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command("PING")
        assert conn.read_response() in (b"PONG", "PONG", True)
        assert not parser_holds_data(conn)
    finally:
        client.connection_pool.release(conn)
        client.close()

    async def check_async() -> None:
        aclient = redis.asyncio.Redis.from_url(server.url, parser_class=async_cls, protocol=2)
        aconn = await aclient.connection_pool.get_connection()
        try:
            await aconn.send_command("PING")
            assert await aconn.read_response() in (b"PONG", "PONG", True)
            assert not parser_holds_data(aconn)
        finally:
            await aclient.connection_pool.release(aconn)
            await aclient.aclose()

    asyncio.run(check_async())
