"""``stats()`` and ``in_flight_items()``: a set's figures from outside, on every
codec, driver, client library and topology, for the three classes, plain
and sharded."""
from __future__ import annotations

import asyncio
import time

import pytest
import redis

import redset
import redset.asyncio as aredset
from redset.stats import InFlightItem, SetStats, taken_at

from .conftest import client_kwargs, flushed_client


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("cls", [redset.SortedSet, redset.TimeSortedSet, redset.ScheduledSet])
def test_an_empty_set_has_zero_figures_not_errors(r, cls, shards):
    st = cls(r, "q", shards=shards).stats()
    assert isinstance(st, SetStats) and st.name == "q"
    assert (st.length, st.due, st.in_flight, st.dead, st.oldest_lease_age) == (0, 0, 0, 0, 0.0)
    assert st.next_due is None
    assert st.oldest_age == (None if cls is redset.SortedSet else 0.0)
    assert st.as_dict()["length"] == 0 and abs(st.time - time.time()) < 5


@pytest.mark.parametrize("shards", [1, 3])
def test_time_sorted_set_age_is_the_oldest_items_wait(r, shards):
    s = redset.TimeSortedSet(r, "q", shards=shards)
    now = time.time()
    s.add_many(["old", "mid", "new"], [now - 30, now - 10, now])
    st = s.stats()
    assert st.length == st.due == 3
    assert 29.5 < st.oldest_age < 35 and st.next_due is None


@pytest.mark.parametrize("shards", [1, 3])
def test_sorted_set_has_no_age(r, shards):
    s = redset.SortedSet(r, "q", shards=shards)
    s.add_many(["a", "b"], [5, 1])
    st = s.stats()
    assert (st.length, st.due, st.oldest_age, st.next_due) == (2, 2, None, None)


@pytest.mark.parametrize("shards", [1, 3])
def test_scheduled_set_counts_only_due_items_in_its_age(r, shards):
    s = redset.ScheduledSet(r, "q", shards=shards)
    now = time.time()
    s.add_many(["later", "much later"], [now + 100, now + 200])
    st = s.stats()
    # one item far ahead must not look like a stuck queue
    assert (st.length, st.due, st.oldest_age) == (2, 0, 0.0)
    assert abs(st.next_due - (now + 100)) < 0.01
    s.add("late", now - 20)
    st = s.stats()
    assert (st.length, st.due) == (3, 1) and 19.5 < st.oldest_age < 25
    assert abs(st.next_due - (now + 100)) < 0.01


@pytest.mark.parametrize("shards", [1, 3])
def test_leases_in_flight_and_dead_letters(r, shards):
    s = redset.SortedSet(r, "q", shards=shards, max_deliveries=1)
    s.add_many(["a", "b", "c"], [1, 2, 3])
    before = time.time()
    held = s.take(2, lease=30)
    time.sleep(0.25)
    st = s.stats()
    assert (st.length, st.in_flight, st.dead) == (1, 2, 0)
    assert 0.2 < st.oldest_lease_age < 10
    listed = s.in_flight_items()
    assert all(isinstance(x, InFlightItem) for x in listed)
    assert sorted(x.item for x in listed) == ["a", "b"]
    for x in listed:
        assert x.deliveries == 1 and x.score in (1.0, 2.0)
        assert before + 29 < x.deadline < before + 31 + 5
        assert x.taken_at is not None and before - 1 < x.taken_at < before + 5
    assert len(s.in_flight_items(1)) == 1
    s.ack_many(held)
    short = s.take(1, lease=0.1)
    assert [x.item for x in short] == ["c"]
    time.sleep(0.2)
    s.take(1, lease=0.1)  # reclaims the expired lease: max_deliveries=1 -> dead
    st = s.stats()
    assert (st.length, st.in_flight, st.dead, st.oldest_lease_age) == (0, 0, 1, 0.0)
    assert s.in_flight_items() == []


def test_lease_tokens_carry_their_time():
    assert abs(taken_at(redset.leases.new_token()) - time.time()) < 2
    assert taken_at("abcdef") is None and taken_at("zz.1") is None


def test_asyncio_stats(server, aimpl, protocol):
    for _ in flushed_client(server, protocol):
        pass

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(server.url, **client_kwargs(protocol))
        for shards in (1, 2):
            s = aredset.ScheduledSet(client, "q%d" % shards, shards=shards)
            await s.add_many(["x", "y"], [time.time() - 5, time.time() + 60])
            await s.take(1, lease=10)
            st = await s.stats()
            assert (st.length, st.due, st.in_flight) == (1, 0, 1) and st.next_due is not None
            items = await s.in_flight_items()
            assert [x.item for x in items] == ["x"]
        await client.aclose()

    asyncio.run(main())
