"""redset.asyncio: the coroutine API, and cancellation that loses nothing.

The behaviours themselves run on the asyncio driver through the whole suite
(the ``driver`` fixture); these tests cover what only the asyncio classes
have: coroutines, async iterables and iterators, the async consumer, and
cancelling a call at any await.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import pytest
import redis
import redis.asyncio

import redset.asyncio as aredset
from redset.exceptions import LockTimeout, StaleLeaseError

from .conftest import client_kwargs, flushed_client
from .proxy import DelayingProxy

CLASSES = [aredset.SortedSet, aredset.TimeSortedSet, aredset.ScheduledSet]


@pytest.fixture
def aclient(client_lib: str) -> Any:
    """The asyncio client class of the library under test."""
    if client_lib == "valkey":
        import valkey.asyncio

        return valkey.asyncio.Valkey
    return redis.asyncio.Redis


@pytest.fixture
def sync_client(server: Any, aimpl: Any, protocol: int) -> Iterator[redis.Redis]:
    yield from flushed_client(server, protocol)


@pytest.fixture
def aurl(server: Any, protocol: int, sync_client: redis.Redis) -> Iterator[Any]:
    """(url, client kwargs) of the session's server, flushed."""
    yield server.url, client_kwargs(protocol)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("cls", CLASSES)
def test_coroutine_api_round_trip(aclient, aurl, cls):
    url, kwargs = aurl

    async def main() -> None:
        client = aclient.from_url(url, **kwargs)
        s = cls(client, "q")
        assert await s.add("a", 1) == 1
        assert await s.add_many(["b", "c", "a"], [2, 3, 9]) == 2
        assert await s.count() == 3 and await s.contains("b") and not await s.contains("z")
        assert await s.score("a") == 1.0 and await s.peek() == "a" and await s.peek_score() == 1.0
        assert await s.take(2) == ["a", "b"]
        assert await s.pop() == "c"
        with pytest.raises(KeyError):
            await s.pop()
        assert await s.take(1, timeout=0.1) == []
        await s.add_many(["k%d" % i for i in range(2500)], range(2500))
        got = [batch async for batch in s.drain(1000)]
        assert [len(b) for b in got] == [1000, 1000, 500]
        assert await s.discard("nope") is False
        await s.add("x", 1)
        assert await s.clear() == 1 and await s.count() == 0
        if cls is aredset.ScheduledSet:
            await s.add("later", time.time() + 3600)
            assert await s.available() == 0 and await s.count() == 1
        await client.aclose()

    run(main())


def test_add_many_takes_async_iterables_and_names_input_indices(aclient, aurl):
    url, kwargs = aurl

    async def gen(n: int) -> Any:
        for i in range(n):
            yield "g%05d" % i

    async def bad() -> Any:
        yield "ok"
        yield {"not": "storable"}

    async def main() -> None:
        client = aclient.from_url(url, **kwargs)
        s = aredset.SortedSet(client, "q", scorer=lambda item: int(item[1:]), chunk_size=100)
        assert await s.add_many(gen(2550)) == 2550
        assert await s.count() == 2550 and await s.take(2) == ["g00000", "g00001"]
        with pytest.raises(TypeError, match="item 1"):
            await aredset.SortedSet(client, "other").add_many(bad())
        with pytest.raises(TypeError, match="async iterable"):
            await s.add_many(gen(3), scores=[1, 2, 3])
        await client.aclose()

    run(main())


def test_leases_and_the_async_consumer(aclient, aurl):
    url, kwargs = aurl

    async def main() -> None:
        client = aclient.from_url(url, **kwargs)
        s = aredset.SortedSet(client, "q", max_deliveries=2)
        await s.add_many(["a", "b", "c"], [1, 2, 3])
        leases = await s.take(2, lease=30)
        assert [x.item for x in leases] == ["a", "b"] and await s.in_flight() == 2
        await leases[0].ack()
        with pytest.raises(StaleLeaseError):
            await leases[0].ack()
        assert await leases[1].nack() is True
        seen = []
        with pytest.raises(RuntimeError):
            async with s.consumer(lease=30, batch_size=3, timeout=0.2) as items:
                async for item in items:
                    seen.append(item)
                    if item == "c":
                        raise RuntimeError("boom")
        assert seen == ["b", "c"]
        # "b" acked; "c" nacked (charged); nothing lost, nothing in flight.
        assert await s.in_flight() == 0
        again = await s.take(5, lease=30)
        assert [(x.item, x.deliveries) for x in again] == [("c", 2)]
        assert await s.ack_many(again) == 1
        await client.aclose()

    run(main())


def test_async_lock(aclient, aurl):
    url, kwargs = aurl

    async def main() -> None:
        client = aclient.from_url(url, **kwargs)
        lock = aredset.Lock(client, "l", expires=5, timeout=0)
        async with lock:
            assert await lock.locked()
            with pytest.raises(LockTimeout):
                await aredset.Lock(client, "l", timeout=0).acquire()
        assert not await lock.locked()
        await client.aclose()

    run(main())


def test_a_sync_client_is_refused(sync_client):
    with pytest.raises(TypeError, match=r"redset\.SortedSet"):
        aredset.SortedSet(sync_client, "q")


# -- cancellation ------------------------------------------------------------------------


@pytest.fixture
def delayed(server: Any, protocol: int, sync_client: redis.Redis) -> Iterator[Any]:
    proxy = DelayingProxy(int(server.url.rsplit(":", 1)[1].split("/")[0]))
    try:
        yield proxy, client_kwargs(protocol)
    finally:
        proxy.close()


@pytest.mark.parametrize("op", ["take", "scheduled-take", "drain", "blocking-take", "count"])
def test_cancelled_call_loses_nothing_and_leaves_no_reply_behind(aclient, delayed, sync_client, op):
    """Cancel a call after its command reached the server and before its
    reply came back (the proxy holds replies back): popped items are put
    back, and the next call on the same client reads its own reply."""
    proxy, kwargs = delayed
    r = sync_client
    cls = aredset.ScheduledSet if op == "scheduled-take" else aredset.SortedSet

    async def main() -> None:
        client = aclient.from_url(proxy.url, max_connections=1, **kwargs)
        s = cls(client, "q")
        if op != "blocking-take":
            await s.add_many(["i%02d" % i for i in range(20)], [time.time() - 100 + i for i in range(20)])
        await s.count()  # warm the one connection

        async def call() -> Any:
            if op == "drain":
                return [b async for b in s.drain(5)]
            if op == "blocking-take":
                return await s.take(3, timeout=2)
            if op == "count":
                return await s.count()
            return await s.take(5)

        if op == "blocking-take":
            task = asyncio.ensure_future(call())
            await asyncio.sleep(0.2)  # blocked in BZPOPMIN now
            proxy.delay = 0.3
            r.zadd("q", {"late": 1})  # pops it for the blocked take; the reply is held back
        else:
            proxy.delay = 0.3
            task = asyncio.ensure_future(call())
        await asyncio.sleep(0.15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proxy.delay = 0
        # Nothing lost: every item is back (or was never popped).
        expected = 1 if op == "blocking-take" else 20
        assert r.zcard("q") == expected, sorted(r.zrange("q", 0, -1))
        # The next calls read their own replies, on the one connection.
        assert await s.count() == expected
        assert await s.add("fresh", 0) == 0
        assert await s.peek() == "fresh"
        await client.aclose()

    run(main())


def test_cancelled_leased_take_keeps_items_leased_until_expiry(aclient, delayed, sync_client):
    proxy, kwargs = delayed
    r = sync_client

    async def main() -> None:
        client = aclient.from_url(proxy.url, **kwargs)
        s = aredset.SortedSet(client, "q")
        await s.add_many(["a", "b"], [1, 2])
        proxy.delay = 0.3
        task = asyncio.ensure_future(s.take(2, lease=0.5))
        await asyncio.sleep(0.15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proxy.delay = 0
        assert r.zcard("q") + r.zcard("{q}:inflight") == 2  # leased or waiting, never lost
        await asyncio.sleep(0.6)
        again = await s.take(5, lease=30)
        assert sorted(x.item for x in again) == ["a", "b"]
        await client.aclose()

    run(main())


def test_cancelled_during_client_pause_loses_nothing(aclient, server, protocol, sync_client):
    """The server itself holds the pop (CLIENT PAUSE WRITE) while the caller is cancelled."""
    r = sync_client

    async def main() -> None:
        client = aclient.from_url(server.url, **client_kwargs(protocol))
        s = aredset.SortedSet(client, "q")
        await s.add_many(["a", "b", "c"], [1, 2, 3])
        r.execute_command("CLIENT", "PAUSE", 300, "WRITE")
        task = asyncio.ensure_future(s.take(2))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sorted(await s.take(5)) == ["a", "b", "c"]
        await client.aclose()

    run(main())


class _AsyncWrapper:
    """An asyncio client that is not a redis.asyncio.Redis: redset must use
    its public ``execute_command`` (the asyncio client fallback driver)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("window", [1, 3])
def test_drain_window_and_early_stop_put_back_every_pop_in_flight(aclient, aurl, window):
    url, kwargs = aurl

    async def main() -> None:
        client = aclient.from_url(url, **kwargs)
        s = aredset.SortedSet(client, "q")
        with pytest.raises(ValueError, match="window"):
            s.drain(10, window=0)
        with pytest.raises(TypeError, match="window"):
            s.drain(10, window="2")
        await s.add_many(["k%05d" % i for i in range(20000)], range(20000))
        it = s.drain(1000, window=window)
        delivered = [x for _ in range(2) for x in await it.__anext__()]
        await it.aclose()
        assert delivered == ["k%05d" % i for i in range(2000)]
        assert await s.count() == 18000  # every pop in flight was put back
        assert await s.peek() == "k02000" and await s.score("k02000") == 2000.0
        got = [x async for batch in s.drain(1000, window=window) for x in batch]
        assert got == ["k%05d" % i for i in range(2000, 20000)]
        await client.aclose()

    run(main())


@pytest.mark.parametrize("cls", CLASSES)
def test_client_fallback_driver_through_a_wrapper(aclient, aurl, cls):
    from redset._io.aio import AsyncClientDriver

    url, kwargs = aurl

    async def main() -> None:
        client = aclient.from_url(url, **kwargs)
        s = cls(_AsyncWrapper(client), "q")
        assert isinstance(s._io, AsyncClientDriver)
        assert await s.add_many(["b", "a", "c"], [2, 1, 3]) == 3
        assert await s.count() == 3 and await s.contains("a")
        assert await s.pop() == "a"
        assert [x async for batch in s.drain(1) for x in batch] == ["b", "c"]
        t0 = time.monotonic()
        assert await s.take(2, timeout=0.3) == []  # a wait: blocking or sleeping in slices
        assert time.monotonic() - t0 >= 0.25
        await s.add("d", 1)
        (lease,) = await s.take(1, lease=30)
        assert lease.item == "d" and await s.in_flight() == 1
        await lease.ack()
        assert await s.in_flight() == 0 and await s.count() == 0
        await client.aclose() if hasattr(client, "aclose") else await client.close()

    run(main())
