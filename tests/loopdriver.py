"""Run the behaviour suite on the asyncio driver, and over valkey-py clients.

:class:`LoopDriver` gives the sync classes the asyncio driver of
:mod:`redset._io.aio`, run on an event loop in a thread of its own, over a
``redis.asyncio`` (or ``valkey.asyncio``) client made with the sync
client's connection settings. :func:`install_sync_twins` makes sets run on
a ``valkey.Valkey`` twin of the test's redis-py client instead. The
``driver`` and ``client_lib`` fixtures install them, so every behaviour test
that builds a set runs on each driver and client library without being
copied. The test's own client (for setting up and checking) stays redis-py.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Dict, Iterator, List, Optional

import redis
from redis.cluster import RedisCluster
import redis.asyncio
import redis.asyncio.cluster

from redset._io.aio import make_async_driver

_KWARGS = ("host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
           "protocol", "decode_responses", "encoding", "client_name")
_SSL_KWARGS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")


class EventLoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="redset-test-loop", daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: Optional[float] = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _twin_kwargs(client: Any) -> Dict[str, Any]:
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _KWARGS}
    if pool.connection_class.__name__ == "SSLConnection":  # TLS: the same certificates
        kwargs["ssl"] = True
        kwargs.update({k: v for k, v in pool.connection_kwargs.items() if k in _SSL_KWARGS})
    if kwargs.get("protocol") is None:  # valkey.asyncio would send "HELLO None"
        kwargs.pop("protocol", None)
    return kwargs


def _cluster_twin_kwargs(client: Any) -> Dict[str, Any]:
    """Where a twin of a cluster client starts (its default node) and its protocol."""
    node = client.get_default_node()
    kwargs = {k: v for k, v in client.nodes_manager.connection_kwargs.items() if k in ("protocol",)}
    return dict(kwargs, host=node.host, port=node.port)


class SyncTwins:
    """One ``valkey.Valkey`` twin per redis-py client, closed at the end of a test."""

    def __init__(self) -> None:
        self.by_id: Dict[int, Any] = {}
        self.lock = threading.Lock()

    def twin(self, client: Any) -> Any:
        import valkey

        with self.lock:
            return self._twin(valkey, client)

    def _twin(self, valkey: Any, client: Any) -> Any:
        twin = self.by_id.get(id(client))
        if twin is None:
            twin = self.by_id[id(client)] = valkey.Valkey(**_twin_kwargs(client))
        return twin

    def cluster_twin(self, client: Any) -> Any:
        """A ``valkey.cluster.ValkeyCluster`` of the same cluster as ``client``."""
        with self.lock:
            return self._cluster_twin(client)

    def _cluster_twin(self, client: Any) -> Any:
        from valkey.cluster import ValkeyCluster

        twin = self.by_id.get(id(client))
        if twin is None:
            kwargs = _cluster_twin_kwargs(client)
            twin = self.by_id[id(client)] = ValkeyCluster(**kwargs)
        return twin

    def close(self) -> None:
        for twin in self.by_id.values():
            twin.close()
        self.by_id.clear()


class AsyncClients:
    """One asyncio twin per sync client (``redis.asyncio.Redis``, or
    ``valkey.asyncio.Valkey`` with ``lib="valkey"``), closed at the end of a test."""

    def __init__(self, loop: EventLoopThread, lib: str = "redis") -> None:
        self.loop = loop
        self.lib = lib
        self.by_id: Dict[int, Any] = {}
        self.lock = threading.Lock()

    def twin(self, client: Any) -> Any:
        with self.lock:  # sets are built in several threads at once (the cluster load tests)
            return self._twin(client)

    def _twin(self, client: Any) -> Any:
        twin = self.by_id.get(id(client))
        if twin is None and isinstance(client, RedisCluster):
            twin = self.by_id[id(client)] = self.loop.call(self._cluster_twin(client))
        if twin is None:
            kwargs = _twin_kwargs(client)
            lib = self.lib

            async def make() -> Any:
                # Inside the loop: on Python 3.9 the pool's asyncio.Lock binds
                # to the loop current at construction.
                if lib == "valkey":
                    import valkey.asyncio

                    return valkey.asyncio.Valkey(**kwargs)
                return redis.asyncio.Redis(**kwargs)

            twin = self.loop.call(make())
            self.by_id[id(client)] = twin
        return twin

    async def _cluster_twin(self, client: Any) -> Any:
        kwargs = _cluster_twin_kwargs(client)
        if self.lib == "valkey":
            from valkey.asyncio.cluster import ValkeyCluster

            return ValkeyCluster(**kwargs)
        return redis.asyncio.cluster.RedisCluster(**kwargs)

    def close(self) -> None:
        for twin in self.by_id.values():
            self.loop.call(twin.aclose())
        self.by_id.clear()


class LoopDriver:
    """A sync driver interface over the asyncio driver."""

    def __init__(self, loop: EventLoopThread, clients: AsyncClients, client: Any, wire: Any,
                 socket_pops: bool, key: Any = None) -> None:
        self.loop = loop
        self.client = client
        self.wire = wire
        self.inner = make_async_driver(clients.twin(client), wire, socket_pops, key)
        check = getattr(self.inner, "check_same_slot", None)
        if check is not None:
            self.check_same_slot = check

    def run(self, plan: Any) -> Any:
        return self.loop.call(self.inner.run(plan))

    def iterate(self, plan: Any) -> Iterator[Any]:
        values = self.inner.iterate(plan)
        try:
            while True:
                try:
                    value = self.loop.call(values.__anext__())
                except StopAsyncIteration:
                    return
                yield value
        finally:
            self.loop.call(values.aclose())

    def socket_timeout(self) -> Optional[float]:
        return self.loop.call(self.inner.socket_timeout())  # type: ignore[no-any-return]


def install(monkeypatch: Any, loop: EventLoopThread, clients: AsyncClients) -> None:
    """Make every set and lock built from now on run on the asyncio driver."""
    import redset.locks
    import redset.sets

    def make(client: Any, wire: Any, socket_pops: bool, key: Any = None) -> Any:
        if not isinstance(client, (redis.Redis, RedisCluster)):
            return original(client, wire, socket_pops, key)  # wrappers keep the client fallback
        return LoopDriver(loop, clients, client, wire, socket_pops, key)

    original = redset.sets.make_driver
    monkeypatch.setattr(redset.sets.SortedSet, "_driver_factory", staticmethod(make))
    monkeypatch.setattr(redset.locks, "make_driver", make)


def install_sync_twins(monkeypatch: Any, twins: SyncTwins) -> None:
    """Make every set and lock built from now on run on the sync driver over a
    valkey-py twin of its redis-py client."""
    import redset.locks
    import redset.sets

    def make(client: Any, wire: Any, socket_pops: bool, key: Any = None) -> Any:
        if isinstance(client, RedisCluster):
            return original(twins.cluster_twin(client), wire, socket_pops, key)
        if not isinstance(client, redis.Redis):
            return original(client, wire, socket_pops, key)  # wrappers keep the client fallback
        return original(twins.twin(client), wire, socket_pops, key)

    original = redset.sets.make_driver
    monkeypatch.setattr(redset.sets.SortedSet, "_driver_factory", staticmethod(make))
    monkeypatch.setattr(redset.locks, "make_driver", make)


__all__: List[str] = ["EventLoopThread", "AsyncClients", "SyncTwins", "LoopDriver", "install", "install_sync_twins"]
