"""Sharded sets (``shards=K``): one logical set over K keys with their own hash tags.

Every test here runs on both codecs, both drivers of the shards (sync and
asyncio through the ``driver`` fixture), both client libraries, RESP2/3,
and, with ``REDSET_TEST_TOPOLOGIES=cluster``, on the 3-primary cluster. The
asyncio facade's own fan-out (tasks, cancellation) is tested at the end.
"""
from __future__ import annotations

import asyncio
import threading
import time
import zlib
from typing import Any

import pytest
import redis

import redset
import redset.asyncio as aredset
from redset._core.config import shard_names
from redset.exceptions import InvalidScoreError, StaleLeaseError

from .conftest import client_kwargs, flushed_client
from .topo import is_cluster, node_of

CLASSES = [redset.SortedSet, redset.TimeSortedSet, redset.ScheduledSet]


def past(n: int) -> list:
    """Scores that are due (a ScheduledSet hands them out), increasing."""
    base = time.time() - 10000
    return [base + i for i in range(n)]


def test_shards_argument_is_checked(r):
    for bad, exc in ((0, ValueError), (257, ValueError), (True, TypeError), ("3", TypeError), (2.0, TypeError)):
        with pytest.raises(exc, match="shards"):
            redset.SortedSet(r, "q", shards=bad)
    assert redset.SortedSet(r, "q", shards=1).shards == 1
    assert redset.SortedSet(r, "q", shards=1).shard_sets == []


def test_shard_names_are_stable_and_spread_over_slot_ranges():
    from redis.crc import key_slot

    names = shard_names("jobs", 6)
    assert names == shard_names("jobs", 6)  # every client computes the same
    assert len(set(names)) == 6
    for i, name in enumerate(names):
        assert name.startswith("{jobs:%d" % i) and name.endswith("}")
        assert key_slot(name.encode()) * 6 // 16384 == i
    assert shard_names("{a}b", 2)[0].startswith("{ab:0")


@pytest.mark.parametrize("cls", CLASSES)
def test_dedup_holds_across_shards(r, cls):
    s = cls(r, "q", shards=4)
    items = ["item-%d" % i for i in range(500)]
    assert s.add_many(items, past(500)) == 500
    assert s.add_many(items, past(500)) == 0  # ten producers, stored once
    s.add("item-7", past(1)[0])
    assert len(s) == 500 == sum(len(x) for x in s.shard_sets)
    for shard in s.shard_sets:
        assert 0 < len(shard) < 500
    # every member is in the shard its crc32 names, and only there
    for shard_index, shard in enumerate(s.shard_sets):
        for item in shard.peek(0), shard.peek(1):
            assert zlib.crc32(s._dump(item)) % 4 == shard_index
    assert "item-42" in s and s.score("nope") is None
    assert s.discard("item-42") and "item-42" not in s and len(s) == 499


@pytest.mark.parametrize("cls", CLASSES)
def test_take_returns_sorted_and_includes_the_lowest_item(r, cls):
    s = cls(r, "q", shards=3)
    scores = past(300)
    s.add_many(["i%03d" % i for i in range(300)], scores)
    seen = []
    while True:
        got = s.take(7)
        if not got:
            break
        remaining = [int(x[1:]) for x in got]
        assert remaining == sorted(remaining)  # one take is sorted by score
        assert min(remaining) == min(set(range(300)) - set(seen))  # the lowest of the whole set is in it
        seen.extend(remaining)
    assert sorted(seen) == list(range(300))  # each exactly once
    assert len(s) == 0


@pytest.mark.parametrize("num", [1, 2, 5])
def test_small_takes_pick_the_shards_with_the_lowest_heads(r, num):
    s = redset.SortedSet(r, "q", shards=5)
    s.add_many(["x%d" % i for i in range(50)], range(50))
    got = s.take(num)
    assert len(got) == num and "x0" in got and got == sorted(got, key=lambda x: int(x[1:]))
    assert s.pop() == min((x for x in ("x%d" % i for i in range(50)) if x not in got), key=lambda x: int(x[1:]))


def test_drain_pop_peek_and_clear(r):
    s = redset.SortedSet(r, "q", shards=3)
    with pytest.raises(KeyError):
        s.pop()
    assert s.take(0) == [] and s.peek_score() is None and list(s.drain(10)) == []
    s.add_many(["a", "b", "c", "d"], [4, 3, 2, 1])
    assert s.peek() == "d" and s.peek(2) == "b" and s.peek_score() == 1.0
    with pytest.raises(KeyError):
        s.peek(4)
    assert s.pop() == "d"
    s.add_many(["k%d" % i for i in range(2500)], range(10, 2510))
    batches = list(s.drain(1000))
    assert sum(len(b) for b in batches) == 2503 and all(len(b) <= 1000 for b in batches)
    s.add_many(["z"])
    assert s.clear() and len(s) == 0


def test_stopping_a_drain_early_puts_nothing_back_and_loses_nothing(r):
    s = redset.SortedSet(r, "q", shards=3)
    s.add_many(range(100), range(100))
    it = s.drain(10)
    first = next(it)
    it.close()
    assert len(first) == 10 and len(s) == 90


def test_blocking_take_sees_an_item_added_to_any_shard(r):
    s = redset.SortedSet(r, "q", shards=4)
    # one item per shard, added while the take waits: each must be seen
    picked = {}
    for i in range(400):
        picked.setdefault(zlib.crc32(s._dump("w%d" % i)) % 4, "w%d" % i)
    assert len(picked) == 4
    for item in picked.values():
        timer = threading.Timer(0.3, s.add, (item,))
        timer.start()
        start = time.monotonic()
        try:
            assert s.take(5, timeout=5) == [item]
        finally:
            timer.join()
        assert time.monotonic() - start < 2.5  # not the whole timeout
    start = time.monotonic()
    assert s.take(3, timeout=0.3) == []
    assert time.monotonic() - start >= 0.29


def test_scheduled_set_sharded_hands_out_only_due_items(r):
    s = redset.ScheduledSet(r, "q", shards=3)
    now = time.time()
    s.add_many(["due1", "due2", "later", "soon"], [now - 5, now - 1, now + 3600, now + 0.4])
    assert len(s) == 4 and s.available() == 2
    assert s.take(10) == ["due1", "due2"]
    assert s.take(10, timeout=3) == ["soon"]
    assert s.take(10) == [] and len(s) == 1 and s.peek_score() is None


def test_leases_across_shards(r):
    s = redset.SortedSet(r, "q", shards=3, max_deliveries=2)
    s.add_many(["a", "b", "c", "d", "e", "f"], range(6))
    leases = s.take(6, lease=30)
    assert sorted(x.item for x in leases) == list("abcdef")
    assert [x.score for x in leases] == sorted(x.score for x in leases)
    assert s.in_flight() == 6 and len(s) == 0
    assert {x._set for x in leases} <= set(s.shard_sets) and len({x._set for x in leases}) > 1
    assert s.ack_many([]) == 0
    assert s.ack_many(leases[:4]) == 4 and s.in_flight() == 2
    leases[4].nack()
    assert s.pop() == leases[4].item
    s.add_many(["s1", "s2", "s3"], [50, 51, 52])
    old = s.take(3, lease=0.1)
    time.sleep(0.2)
    new = s.take(3, lease=30)  # reclaimed from the expired leases
    assert sorted(x.item for x in new) == ["s1", "s2", "s3"]
    with pytest.raises(StaleLeaseError) as info:
        s.ack_many(old)
    assert sorted(x.item for x in info.value.stale) == ["s1", "s2", "s3"]
    assert s.ack_many(new) == 3
    with pytest.raises(ValueError, match="ack_many"):
        redset.SortedSet(r, "other", shards=2).ack_many([leases[5]])
    # expiry: reclaimed at its original score, then dead-lettered after 2 deliveries
    s.add("late", 100)
    first = s.take(1, lease=0.2)
    assert [x.item for x in first] == ["late"]
    time.sleep(0.3)
    again = s.take(5, lease=0.2)
    assert [(x.item, x.deliveries) for x in again] == [("late", 2)]
    time.sleep(0.3)
    assert s.take(5, lease=0.2) == [] and s.dead_count() == 1 and s.dead_letters() == ["late"]
    assert s.requeue_dead() == 1 and s.dead_count() == 0 and s.pop() == "late"
    leases[5].ack()
    assert s.in_flight() == 0


def test_consumer_loop_on_a_sharded_set(r):
    s = redset.SortedSet(r, "q", shards=3, leased=True)
    s.add_many(range(50), range(50))
    seen = []
    with s.consumer(lease=10, batch_size=7, timeout=0.3, handle_signals=False) as items:
        for item in items:
            seen.append(int(item))
    assert sorted(seen) == list(range(50))
    assert s.in_flight() == 0 and len(s) == 0
    s.add_many(range(10))
    with s.consumer(lease=10, batch_size=10, timeout=0.3, handle_signals=False) as items:
        for item in items:
            break  # the rest of the batch goes back, uncharged
    assert s.in_flight() == 0 and len(s) == 9


def test_bad_input_raises_before_anything_is_sent(r):
    s = redset.SortedSet(r, "q", shards=3, chunk_size=10)
    with pytest.raises(InvalidScoreError) as info:
        s.add_many(["a%d" % i for i in range(50)], list(range(49)) + ["x"])
    assert info.value.index == 49 and len(s) == 0
    assert info.value.outcome.not_sent_from == 0 and info.value.outcome.stored == []
    with pytest.raises(TypeError, match="item 3"):
        s.add_many(["a", "b", "c", object()])
    assert len(s) == 0


def test_a_refusing_shard_gives_an_exact_outcome(r, errors):
    s = redset.SortedSet(r, "q", shards=3, chunk_size=5)
    bad = s.shard_sets[1].name
    r.set(bad, "not a sorted set")  # that shard's ZADD is refused
    items = ["m%d" % i for i in range(40)]
    with pytest.raises(errors.ResponseError) as info:
        s.add_many(items, range(40))
    outcome = info.value.outcome
    assert bad.encode() in str(info.value).encode() or "WRONGTYPE" in str(info.value)
    refused = {i for a, b in outcome.refused + outcome.not_sent for i in range(a, b)}
    stored = {i for a, b in outcome.stored for i in range(a, b)}
    to_bad = {i for i, item in enumerate(items) if zlib.crc32(s._dump(item)) % 3 == 1}
    assert refused == to_bad and stored == set(range(40)) - to_bad
    assert len(s.shard_sets[0]) + len(s.shard_sets[2]) == len(stored)
    r.delete(bad)
    for a, b in outcome.retry_ranges():
        s.add_many(items[a:b], range(a, b))
    assert len(s) == 40


def test_settings_reach_the_shards(r):
    s = redset.SortedSet(r, "q", shards=2)
    s.serializer = redset.serializers.JSONSerializer()
    s.add_many([{"a": 1}, {"b": 2}], [1, 2])
    assert s.take(2) == [{"a": 1}, {"b": 2}]
    s.on_decode_error = "raise"
    assert all(x.on_decode_error == "raise" for x in s.shard_sets)


def test_shards_spread_over_the_cluster(r):
    if not is_cluster(r):
        pytest.skip("one server holds every shard")
    s = redset.SortedSet(r, "q", shards=3)
    s.add_many(range(300))
    nodes = {node_of(r, shard.name).connection_pool.connection_kwargs["port"] for shard in s.shard_sets}
    assert len(nodes) == 3  # a freshly made 3-primary cluster: one shard each
    assert len(s) == 300 and sum(len(b) for b in s.drain(100)) == 300


# -- the asyncio facade ------------------------------------------------------------------
@pytest.fixture
def aurl(server: Any, aimpl: Any, protocol: int) -> Any:
    for _ in flushed_client(server, protocol):
        return server.url, client_kwargs(protocol)


def test_asyncio_sharded_round_trip(aurl):
    url, kwargs = aurl

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url, **kwargs)
        s = aredset.SortedSet(client, "q", shards=3)
        assert await s.add_many(["k%d" % i for i in range(2500)], range(2500)) == 2500
        assert await s.count() == 2500 and await s.contains("k7") and await s.peek() == "k0"
        got = await s.take(6)
        assert "k0" in got and got == sorted(got, key=lambda x: int(x[1:]))
        leases = await s.take(4, lease=30)
        assert await s.in_flight() == 4 and await s.ack_many(leases) == 4
        n = 0
        async for batch in s.drain(500):
            n += len(batch)
        assert n == 2490 and await s.count() == 0
        await s.add_many(range(30))
        async with s.consumer(lease=10, batch_size=4, timeout=0.3) as items:
            seen = [x async for x in items]
        assert sorted(int(x) for x in seen) == list(range(30)) and await s.in_flight() == 0
        assert await s.take(2, timeout=0.2) == []
        await client.aclose()

    asyncio.run(main())


def test_asyncio_cancelled_sharded_take_loses_nothing(aurl):
    url, kwargs = aurl

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url, **kwargs)
        s = aredset.SortedSet(client, "q", shards=3)
        await s.add_many(range(3000), range(3000))
        for delay in (0, 0.0005, 0.001, 0.002, 0.005):
            task = asyncio.ensure_future(s.take(900))
            await asyncio.sleep(delay)
            task.cancel()
            try:
                got = await task
            except asyncio.CancelledError:
                got = []
            assert await s.count() + len(got) == 3000
            await s.add_many(got, [int(x) for x in got])
        empty = aredset.SortedSet(client, "empty", shards=3)
        waiter = asyncio.ensure_future(empty.take(5, timeout=10))
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await s.count() == 3000
        await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("num", [1, 2, 8])
def test_small_leased_takes_reclaim_expired_leases_on_empty_shards(r, num):
    s = redset.SortedSet(r, "q", shards=4)
    s.add_many(["only", "other"], [1, 2])
    first = s.take(2, lease=0.1)
    assert sorted(x.item for x in first) == ["only", "other"] and len(s) == 0
    time.sleep(0.2)
    again = s.take(num, lease=10)  # both shards' main sets are empty: only their leases expired
    got = {x.item: x.deliveries for x in again}
    assert len(got) == min(num, 2) and set(got.values()) == {2}
    rest = s.take(2, lease=10)
    assert {x.item for x in again} | {x.item for x in rest} == {"only", "other"}
