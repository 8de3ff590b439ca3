"""Leases (at-least-once), blocking pops, dead letters and the consumer loop."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from redset._core import consuming
from redset import ScheduledSet, SortedSet, TimeSortedSet
from redset.exceptions import StaleLeaseError
from redset.leases import Lease, lease_keys

CLASSES = [SortedSet, TimeSortedSet, ScheduledSet]


def test_lease_keys_share_the_hash_slot():
    from redis.crc import key_slot

    for name in ["jobs", "a:b", "{tag}jobs", "x{t}y", "{", "a{b", "x{y}{z}"]:
        keys = lease_keys(name)
        assert keys[0] == name
        assert len({key_slot(k.encode()) for k in keys}) == 1, (name, keys)
    # No valid tag but a "}": plain suffixes (documented as not cluster-safe).
    assert lease_keys("{}odd")[1] == "{}odd:inflight"


@pytest.mark.parametrize("cls", CLASSES)
def test_take_with_lease_moves_items_in_flight(r, cls):
    s = cls(r, "q")
    s.add_many(["a", "b", "c"], [1, 2, 3])
    leases = s.take(2, lease=30)
    assert [x.item for x in leases] == ["a", "b"]
    assert all(isinstance(x, Lease) for x in leases)
    assert [x.score for x in leases] == [1.0, 2.0]
    assert [x.deliveries for x in leases] == [1, 1]
    assert len(s) == 1 and s.in_flight() == 2
    leases[0].ack()
    assert s.in_flight() == 1
    assert leases[1].nack() is True
    assert s.in_flight() == 0
    assert s.take(5) == ["b", "c"]


def test_nack_with_score_or_delay(r):
    s = ScheduledSet(r, "q")
    s.add("a", time.time() - 1)
    lease = s.pop(lease=30)
    lease.nack(delay=3600)
    assert s.available() == 0 and len(s) == 1
    assert s.score("a") > time.time() + 3000
    with pytest.raises(ValueError):
        Lease(s, b"a", "a", 0.0, 1, "t", 0.0).nack(score=1, delay=1)


def test_expired_lease_is_reclaimed_at_original_score_and_stale_ack_rejected(r):
    s = SortedSet(r, "q")
    s.add_many(["a", "b"], [5, 7])
    first = s.pop(lease=0.1)
    assert first.item == "a"
    time.sleep(0.15)
    second = s.pop(lease=30)  # reclaims "a" at score 5, so "a" comes first again
    assert second.item == "a" and second.score == 5.0 and second.deliveries == 2
    with pytest.raises(StaleLeaseError, match="no longer held"):
        first.ack()
    with pytest.raises(StaleLeaseError):
        first.nack()
    with pytest.raises(StaleLeaseError):
        first.extend(10)
    second.ack()
    with pytest.raises(StaleLeaseError):
        second.ack()  # settled already
    assert s.in_flight() == 0 and s.take(5) == ["b"]


def test_extend_keeps_the_lease(r):
    s = SortedSet(r, "q")
    s.add("a")
    lease = s.pop(lease=0.2)
    lease.extend(30)
    time.sleep(0.3)
    assert s.take(5, lease=1) == []  # not reclaimed
    lease.ack()


def test_max_deliveries_moves_to_dead_letters_and_requeue(r):
    s = SortedSet(r, "q", max_deliveries=2)
    s.add("a", 3)
    s.pop(lease=30).nack()
    s.pop(lease=0.05)
    time.sleep(0.1)
    assert s.take(5, lease=30) == []  # second expiry: dead, not redelivered
    assert s.dead_count() == 1 and s.dead_letters() == ["a"]
    assert len(s) == 0 and s.in_flight() == 0
    assert s.requeue_dead() == 1
    lease = s.pop(lease=30)
    assert lease.item == "a" and lease.score == 3.0 and lease.deliveries == 1
    assert lease.nack() is True


def test_nack_past_max_deliveries_returns_false(r):
    s = SortedSet(r, "q", max_deliveries=1)
    s.add("a")
    assert s.pop(lease=30).nack() is False
    assert s.dead_letters() == ["a"]


def test_leased_set_does_not_queue_an_item_in_flight_twice(r):
    s = SortedSet(r, "q", leased=True)
    s.add_many(["a", "b"], [1, 2])
    lease = s.pop(lease=30)
    assert s.add("a", 1) == 1 and len(s) == 1
    assert s.add_many(["a", "c"], [1, 3]) == 1
    assert len(s) == 2
    lease.ack()
    assert s.add_many(["a"], [1]) == 1


def test_blocking_take_waits_for_a_producer(r):
    s = SortedSet(r, "q")
    threading.Timer(0.2, lambda: s.add_many(["x", "y", "z"])).start()
    t0 = time.monotonic()
    assert s.take(2, timeout=5) == ["x", "y"]
    assert time.monotonic() - t0 < 3
    assert s.take(1, timeout=0.2) == ["z"]
    t0 = time.monotonic()
    assert s.take(1, timeout=0.3) == []
    assert time.monotonic() - t0 >= 0.29
    with pytest.raises(KeyError):
        s.pop(timeout=0.1)


def test_scheduled_pop_wakes_when_item_is_due(r):
    s = ScheduledSet(r, "q")
    due = time.time() + 0.5
    s.add("later", due)
    assert s.pop(timeout=3) == "later"
    late = time.time() - due
    # Woken at the due time, not by a poll: a generous bound for loaded CI machines.
    assert 0 <= late < 0.25, "woke %.3f s after due" % late


def test_scheduled_pop_wakes_for_a_new_earlier_item(r):
    s = ScheduledSet(r, "q")
    s.add("far", time.time() + 3600)
    threading.Timer(0.2, lambda: s.add("now")).start()
    t0 = time.monotonic()
    assert s.pop(timeout=5) == "now"
    assert time.monotonic() - t0 < 1.0


def test_leased_blocking_take_wakes_on_lease_expiry(r):
    s = SortedSet(r, "q")
    s.add("a")
    s.pop(lease=0.3)
    t0 = time.monotonic()
    again = s.pop(lease=30, timeout=3)
    assert again.item == "a" and again.deliveries == 2
    assert time.monotonic() - t0 < 1.0


def test_consumer_acks_on_success_and_nacks_on_error(r):
    s = SortedSet(r, "q", leased=True)
    s.add_many(["a", "b", "c", "d"], [1, 2, 3, 4])
    seen = []
    with pytest.raises(RuntimeError):
        with s.consumer(lease=30, batch_size=3, timeout=0.2, handle_signals=False) as items:
            for item in items:
                seen.append(item)
                if item == "b":
                    raise RuntimeError("boom")
    assert seen == ["a", "b"]
    # "a" was acked; "b" nacked; "c" (rest of the batch) put back.
    assert s.in_flight() == 0
    assert sorted(s.take(10)) == ["b", "c", "d"]


def test_consumer_drains_and_ends_on_timeout(r):
    s = SortedSet(r, "q")
    s.add_many(["k%d" % i for i in range(25)], range(25))
    with s.consumer(lease=30, batch_size=10, timeout=0.3, handle_signals=False) as items:
        got = list(items)
    assert got == ["k%d" % i for i in range(25)]
    assert s.in_flight() == 0 and len(s) == 0


def test_consumer_extends_leases_while_work_runs(r):
    s = SortedSet(r, "q")
    s.add("slow")
    with s.consumer(lease=0.3, batch_size=1, timeout=0.2, handle_signals=False) as items:
        for item in items:
            time.sleep(0.7)  # longer than the lease: the extender keeps it
            assert s.take(1, lease=10) == []
    assert s.in_flight() == 0 and len(s) == 0


@pytest.fixture
def sigterm_seen():
    """A recording SIGTERM handler, installed for the test: the signals it saw."""
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_consumer_stops_on_sigterm_and_hands_it_on(r, sigterm_seen):
    s = SortedSet(r, "q")
    s.add_many(["a", "b", "c"], [1, 2, 3])
    got = []
    with s.consumer(lease=30, batch_size=3, timeout=1) as items:
        for item in items:
            got.append(item)
            os.kill(os.getpid(), signal.SIGTERM)
            assert sigterm_seen == []  # deferred while the block runs
    assert got == ["a"]
    assert sigterm_seen == [signal.SIGTERM]  # the previous handler ran after the block
    assert items.signalled == signal.SIGTERM
    assert s.in_flight() == 0
    assert s.take(5) == ["b", "c"]


def test_sigterm_while_the_block_exits_on_an_exception_is_not_lost(r, sigterm_seen, monkeypatch):
    s = SortedSet(r, "q")
    s.add_many(["a", "b"], [1, 2])
    real_nack = consuming.nack  # the plan the consumer nacks with

    def nack_then_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while __exit__ settles the batch
        return real_nack(*args, **kwargs)

    monkeypatch.setattr(consuming, "nack", nack_then_signal)
    with pytest.raises(RuntimeError):
        with s.consumer(lease=30, batch_size=2, timeout=1) as items:
            for item in items:
                raise RuntimeError("boom on %s" % item)
    assert sigterm_seen == [signal.SIGTERM]
    assert items.signalled == signal.SIGTERM


def test_consumer_charges_only_the_item_that_failed(r):
    s = SortedSet(r, "q", max_deliveries=3)
    s.add_many(["poison", "innocent"], [1, 2])
    handled = []
    for _ in range(3):
        with pytest.raises(ValueError):
            with s.consumer(lease=30, batch_size=2, timeout=0.2, handle_signals=False) as items:
                for item in items:
                    if item == "poison":
                        raise ValueError(item)
                    handled.append(item)
    assert s.dead_letters() == ["poison"]
    # "innocent" was put back three times without being charged.
    leases = s.take(5, lease=30)
    assert [(x.item, x.deliveries) for x in leases] == [("innocent", 1)]
    assert handled == []


@pytest.mark.parametrize("cls", [SortedSet, TimeSortedSet])
def test_nack_with_delay_keeps_priority(r, cls):
    s = cls(r, "q")
    s.add_many(["late", "first"], [5, 1])
    lease = s.pop(lease=30)
    assert lease.item == "first"
    assert lease.nack(delay=0.3) is True
    with pytest.raises(StaleLeaseError):
        lease.ack()  # the hold is not the consumer's lease any more
    assert [x.item for x in s.take(5, lease=30)] == ["late"]  # "first" is held back
    assert s.score("first") is None and s.in_flight() == 2
    time.sleep(0.35)
    again = s.pop(lease=30, timeout=1)
    assert again.item == "first" and again.score == 1.0 and again.deliveries == 2
def test_undeserializable_leased_item_is_not_left_in_flight(r):
    from redset.serializers import JSONSerializer

    s = SortedSet(r, "q", serializer=JSONSerializer(), dead_letter_key="{q}:bad")
    r.zadd("q", {b"{bad": 1, b'"ok"': 2})
    leases = s.take(5, lease=30)
    assert [x.item for x in leases] == ["ok"]
    assert s.in_flight() == 1
    assert r.zrange("{q}:bad", 0, -1) == [b"{bad"]


def test_ack_many(r):
    s = SortedSet(r, "q")
    s.add_many(["k%d" % i for i in range(2500)], range(2500))
    leases = s.take(2500, lease=30)
    assert s.ack_many(leases) == 2500
    assert s.in_flight() == 0 and len(s) == 0
    assert s.ack_many(leases) == 0  # settled handles are skipped


def test_ack_many_reports_stale_and_acks_the_rest(r):
    s = SortedSet(r, "q")
    s.add_many(["a", "b", "c"], [1, 2, 3])
    short = s.take(1, lease=0.05)
    time.sleep(0.1)
    held = s.take(3, lease=30)  # reclaims "a" and leases all three
    with pytest.raises(StaleLeaseError) as info:
        s.ack_many(short + held[1:])
    assert [x.item for x in info.value.stale] == ["a"]
    assert s.in_flight() == 1  # only the re-leased "a" is still in flight
    held[0].ack()


def test_consumer_acks_each_batch_in_one_call(r, monkeypatch):
    from redset._core import leasing

    calls = []
    real = leasing.ack_many

    def spy(cfg, leases):
        calls.append(len(leases))
        return (yield from real(cfg, leases))

    monkeypatch.setattr(leasing, "ack_many", spy)
    s = SortedSet(r, "q")
    s.add_many(["k%d" % i for i in range(10)], range(10))
    in_flight = []
    with s.consumer(lease=30, batch_size=5, timeout=0.2, handle_signals=False, ack_delay=5) as items:
        for item in items:
            in_flight.append(s.in_flight())
    # Items done wait for their batch: nothing is acked one by one.
    assert in_flight == [5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    assert calls == [5, 5]
    assert items.acked == 10 and s.in_flight() == 0 and len(s) == 0


@pytest.mark.parametrize("ack_delay", [0, 0.2, 10])
def test_consumer_what_a_crash_would_repeat(r, ack_delay):
    # Three items handed out of a batch of five, the block never left (as
    # if the process died): what is still in flight comes back after the
    # lease; what was acked does not.
    s = SortedSet(r, "q")
    s.add_many(["k%d" % i for i in range(5)], range(5))
    c = s.consumer(lease=30, batch_size=5, handle_signals=False, ack_delay=ack_delay)
    c.__enter__()
    try:
        it = iter(c)
        assert [next(it) for _ in range(3)] == ["k0", "k1", "k2"]
        if ack_delay == 0:
            assert s.in_flight() == 3  # k0, k1 acked when the next was asked for
        elif ack_delay == 10:
            assert s.in_flight() == 5  # k0, k1 done, waiting for the batch's ack
        else:
            time.sleep(ack_delay + 0.3)  # the body runs long: the background thread acks them
            assert s.in_flight() == 3
    finally:
        c.__exit__(None, None, None)
    assert s.in_flight() == 0 and c.acked == 3 and sorted(s.take(5)) == ["k3", "k4"]


def test_consumer_ack_delay_is_checked(r):
    s = SortedSet(r, "q")
    with pytest.raises(ValueError, match="ack_delay"):
        s.consumer(lease=3, ack_delay=2)
    with pytest.raises(ValueError, match="ack_delay"):
        s.consumer(lease=3, ack_delay=-1)
    assert s.consumer(lease=0.15).ack_delay == pytest.approx(0.05)


@pytest.mark.parametrize("whole", [True, False], ids=["whole-take", "one-of-two"])
def test_ack_of_a_redelivered_item_forgets_its_deliveries(r, whole):
    s = SortedSet(r, "q")
    s.add_many(["a", "b"], [1, 2])
    s.take(2 if whole else 1, lease=0.05)
    time.sleep(0.1)
    leases = s.take(2, lease=30)  # reclaims, then leases again
    assert [(x.item, x.deliveries) for x in leases] == ([("a", 2), ("b", 2)] if whole else [("a", 2), ("b", 1)])
    assert s.ack_many(leases) == 2
    assert s.in_flight() == 0 and r.zcard(s._lease_keys[3]) == 0 and r.keys("*") == []
