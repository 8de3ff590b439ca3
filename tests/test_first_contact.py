"""What a new user hit first: asyncio clients, counts, bytes, keys left behind, wake-ups."""
from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio

from redset import ScheduledSet, SortedSet, TimeSortedSet
from redset.exceptions import InvalidItemError
from redset.locks import Lock
from redset.serializers import BytesSerializer, JSONSerializer

from .topo import all_keys, node_of, total_keys

CLASSES = [SortedSet, TimeSortedSet, ScheduledSet]


# -- an asyncio client is refused, not silently dropped -------------------------------


def asyncio_client(url: str) -> Any:
    """A redis.asyncio client, made inside a loop (on Python 3.9 its pool
    binds an asyncio.Lock to the current loop); it is never used for I/O."""

    async def make() -> Any:
        return redis.asyncio.Redis.from_url(url)

    return asyncio.run(make())


@pytest.mark.parametrize("cls", CLASSES)
def test_asyncio_client_is_refused_at_construction(r, server, cls):
    aclient = asyncio_client(server.url)
    with pytest.raises(TypeError, match=r"redset\.asyncio\.%s" % cls.__name__):
        cls(aclient, "q")
    s = cls(r, "q")
    with pytest.raises(TypeError, match="asyncio client"):
        s.redis = aclient
    assert s.redis is r  # the set still works on its sync client
    s.add("a", 1)
    assert total_keys(r) == 1


def test_asyncio_client_is_refused_by_lock(r, server):
    with pytest.raises(TypeError, match="asyncio client"):
        Lock(asyncio_client(server.url), "l")


# -- counts are integers -----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["2", 1.9, True, None, 2.0])
def test_take_and_drain_counts_must_be_integers(r, bad):
    s = SortedSet(r, "q")
    s.add_many(["a", "b", "c"], [1, 2, 3])
    with pytest.raises(TypeError, match="must be an int"):
        s.take(bad)
    with pytest.raises(TypeError, match="must be an int"):
        s.take(bad, lease=30)
    with pytest.raises(TypeError, match="must be an int"):
        next(s.drain(bad))
    assert len(s) == 3  # nothing was popped


def test_nonpositive_counts_still_give_an_empty_list(r):
    s = SortedSet(r, "q")
    s.add("a")
    assert s.take(0) == [] and s.take(-1) == []
    assert len(s) == 1


# -- the default serializer only takes what it can give back -------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_default_serializer_refuses_bytes_that_are_not_utf8(r, cls):
    s = cls(r, "q")
    with pytest.raises(InvalidItemError, match="not valid UTF-8"):
        s.add(b"\xff\xfe", 1)
    with pytest.raises(InvalidItemError, match="not valid UTF-8") as info:
        s.add_many([b"ok", bytearray(b"\xc3"), b"x"], [1, 2, 3])
    assert info.value.index == 1 and info.value.sent == 0
    assert total_keys(r) == 0  # nothing was sent
    s.add(b"caf\xc3\xa9", 1)  # UTF-8 bytes are fine and come back as str
    assert s.pop() == "caf\u00e9"
    raw = cls(r, "raw", serializer=BytesSerializer())
    raw.add(b"\xff\xfe", 1)
    assert raw.pop() == b"\xff\xfe"


@pytest.mark.parametrize("lease", [None, 30])
def test_pop_goes_past_items_that_fail_to_load(r, lease):
    s = SortedSet(r, "q", serializer=JSONSerializer())
    r.zadd("q", {b"{bad": 1, b"{worse": 2, b'"ok"': 3})
    got = s.pop(lease=lease)
    assert (got.item if lease else got) == "ok"
    with pytest.raises(KeyError):  # now it is empty
        s.pop(lease=lease)


def test_take_of_only_undecodable_items_is_empty_only_when_the_set_is(r):
    s = SortedSet(r, "q", serializer=JSONSerializer())
    r.zadd("q", {b"{bad": 1, b'"ok"': 2})
    assert s.take(1) == ["ok"]
    assert s.take(1) == [] and len(s) == 0


# -- clear() leaves nothing behind ----------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_clear_removes_every_key_the_set_owns(r, cls):
    s = cls(r, "q", leased=True, max_deliveries=1)
    s.add_many(["a", "b", "c"], [0, 1, 2])
    s.pop(lease=0.05)  # "a": in flight, expires, then dead (max 1 delivery)
    time.sleep(0.1)
    held = s.take(1, lease=30)  # reclaims "a" into the dead letters, leases "b"
    assert [x.item for x in held] == ["b"] and s.dead_count() == 1
    waiter = threading.Thread(target=lambda: s.take(1, lease=30, timeout=0.3))
    waiter.start()
    time.sleep(0.05)
    s.add("d", 3)  # a waiter is registered: this writes the wake list
    waiter.join()
    assert total_keys(r) > 1
    assert s.clear(keep_dead_letters=True)
    assert all_keys(r) == [b"{q}:dead"]
    assert s.clear() == 0  # the set itself was gone already
    assert total_keys(r) == 0


# -- wake-ups: within 50 ms whatever the flags, and no write when nobody waits -----------


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("leased", [False, True])
def test_blocked_leased_take_wakes_soon_after_an_add(r, cls, leased):
    s = cls(r, "q", leased=leased)
    delays = []
    for round_ in range(3):
        got = []
        consumer = threading.Thread(target=lambda: got.append((s.take(1, lease=30, timeout=5), time.monotonic())))
        consumer.start()
        time.sleep(0.15)  # the consumer is blocked by now
        before = time.monotonic()
        s.add("item%d" % round_, 0)
        consumer.join(6)
        leases, woke = got[0]
        assert [x.item for x in leases] == ["item%d" % round_]
        leases[0].ack()
        delays.append(woke - before)
    assert statistics.median(delays) < 0.05, delays


@pytest.mark.parametrize("cls", CLASSES)
def test_scheduled_or_plain_wait_wakes_soon_after_add_many(r, cls):
    s = cls(r, "q")
    got = []
    consumer = threading.Thread(target=lambda: got.append((s.take(2, timeout=5), time.monotonic())))
    consumer.start()
    time.sleep(0.3)
    before = time.monotonic()
    s.add_many(["x", "y"], [0, 1])
    consumer.join(6)
    items, woke = got[0]
    assert items == ["x", "y"]
    assert woke - before < 0.2


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("leased", [False, True])
def test_adds_write_no_wake_keys_when_nobody_waits(r, cls, leased):
    s = cls(r, "q", leased=leased)
    node = node_of(r, "q")
    node.config_resetstat()
    s.add("a", 1)
    s.add_many(["b", "c"], [2, 3])
    s.add_many(["b"], [0], nx=False)  # a score moved: still nobody to wake
    assert all_keys(r) == [b"q"]
    info = node.info("commandstats")
    assert not any(name in info for name in ("cmdstat_lpush", "cmdstat_rpush")), sorted(info)


def test_sets_run_on_the_driver_under_test(r, driver, topology):
    """The suite's ``driver`` and ``topology`` parameters really swap the driver."""
    s = SortedSet(r, "q")
    expected = {("sync", "single"): "SyncDriver", ("asyncio", "single"): "LoopDriver",
                ("sync", "cluster"): "ClusterDriver", ("asyncio", "cluster"): "LoopDriver"}[driver, topology]
    assert type(s._io).__name__ == expected
    s.add_many(["a", "b"], [1, 2])
    assert s.take(2) == ["a", "b"]


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("wait", [0.0005, 0.002, 0.2])
def test_short_waits_end_on_every_server(r, shards, wait):
    # A wait that ends with a sliver left must not send a blocking command a
    # timeout that a server reads as 0 (forever): Redis 6.2 did with 0.001.
    s = SortedSet(r, "q", shards=shards)
    assert s.take(2, timeout=wait) == []
    assert s.take(2, timeout=wait, lease=5) == []
    from redset._core.pops import timeout_arg

    assert timeout_arg(0.0004) == b"0.010" and timeout_arg(0.5) == b"0.500"
