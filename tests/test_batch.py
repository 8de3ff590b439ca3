"""Batch operations, duplicate policies, input validation and server errors."""
from __future__ import annotations

import decimal
import math
import time

import pytest
import redis

from redset import ScheduledSet, SortedSet, TimeSortedSet
from redset.exceptions import (
    DeserializationError,
    InvalidItemError,
    InvalidScoreError,
    InvalidScoreValueError,
)
from redset.serializers import JSONSerializer, StrSerializer

ALL_CLASSES = [SortedSet, TimeSortedSet, ScheduledSet]


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_add_many_counts_new_members_and_dedups(r, cls):
    s = cls(r, "q")
    assert s.add_many(["a", "b", "c"], [1, 2, 3]) == 3
    assert s.add_many(["a", "d"], [9, 0]) == 1
    assert len(s) == 4
    # NX is the add_many default: the first score stays.
    assert s.score("a") == 1.0


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_add_many_uses_scorer_without_scores(r, cls):
    s = cls(r, "q", scorer=lambda item: -len(item))
    s.add_many(["x", "xxx", "xx"])
    assert s.take(3) == ["xxx", "xx", "x"]


def test_time_sorted_add_many_is_fifo(r):
    s = TimeSortedSet(r, "t")
    s.add_many("item%03d" % i for i in range(300))
    assert s.take(300) == ["item%03d" % i for i in range(300)]


def test_add_many_streams_a_generator_in_chunks(r):
    s = SortedSet(r, "q", chunk_size=100)
    consumed = []

    def gen():
        for i in range(1050):
            consumed.append(i)
            yield "m%d" % i

    assert s.add_many(gen(), range(1050)) == 1050
    assert len(consumed) == 1050
    assert len(s) == 1050
    assert s.take(3) == ["m0", "m1", "m2"]


def test_add_many_generator_scores(r):
    s = SortedSet(r, "q", chunk_size=7)
    n = s.add_many(("k%d" % i for i in range(50)), (float(50 - i) for i in range(50)))
    assert n == 50
    assert s.peek() == "k49"


def test_add_many_length_mismatch(r):
    s = SortedSet(r, "q")
    with pytest.raises(ValueError, match="2 items but 1 scores"):
        s.add_many(["a", "b"], [1])
    assert len(s) == 0
    with pytest.raises(ValueError, match="differ in length"):
        s.add_many(iter(["a", "b"]), iter([1]))
    assert len(s) == 0


def test_add_many_empty(r):
    s = SortedSet(r, "q")
    assert s.add_many([]) == 0
    assert s.add_many(iter(())) == 0
    assert len(s) == 0


@pytest.mark.parametrize(
    "score, exc",
    [
        (float("nan"), InvalidScoreValueError),
        (True, InvalidScoreError),
        (None, InvalidScoreError),
        (decimal.Decimal("1.5"), InvalidScoreError),
        ("3", InvalidScoreError),
        (10**400, InvalidScoreValueError),
    ],
)
def test_bad_scores_raise_before_anything_is_sent(r, score, exc):
    s = SortedSet(r, "q")
    with pytest.raises(exc) as info:
        s.add_many(["a", "b", "c"], [1, score, 3])
    assert info.value.index == 1
    assert info.value.sent == 0
    assert "item 1" in str(info.value)
    assert len(s) == 0
    if score is not None:  # add(item, None) means "use the scorer"
        with pytest.raises(exc):
            s.add("x", score)
        assert len(s) == 0


def test_nan_is_value_error_and_bool_is_type_error(r):
    s = SortedSet(r, "q")
    with pytest.raises(ValueError):
        s.add("a", math.nan)
    with pytest.raises(TypeError):
        s.add("a", False)


def test_good_scores_of_every_kind(r):
    s = SortedSet(r, "q")
    s.add_many(["inf", "ninf", "negzero", "big", "sub", "frac"],
               [math.inf, -math.inf, -0.0, 2**60, 5e-324, 0.1])
    assert s.score("inf") == math.inf
    assert s.score("ninf") == -math.inf
    assert s.score("negzero") == 0.0
    assert s.score("big") == float(2**60)
    assert s.score("frac") == 0.1
    assert s.pop() == "ninf"


def test_bad_item_names_index_and_sends_nothing_of_its_chunk(r):
    s = SortedSet(r, "q", serializer=StrSerializer(), chunk_size=10)
    items = ["s%d" % i for i in range(25)]
    items[23] = 23  # not a str
    with pytest.raises(InvalidItemError) as info:
        s.add_many(items, range(25))
    assert isinstance(info.value, TypeError)
    assert info.value.index == 23
    assert info.value.sent == 20
    assert "item 23" in str(info.value)
    # The two earlier chunks were added; nothing of the third.
    assert len(s) == 20


def test_default_serializer_rejects_unstorable_items(r):
    s = SortedSet(r, "q")
    with pytest.raises(TypeError, match="item 1"):
        s.add_many(["a", {"no": "serializer"}], [1, 2])
    with pytest.raises(TypeError):
        s.add(None)
    assert len(s) == 0


@pytest.mark.parametrize(
    "flags",
    [dict(nx=True, xx=True), dict(nx=True, gt=True), dict(nx=True, lt=True), dict(gt=True, lt=True)],
)
def test_conflicting_flags(r, flags):
    s = SortedSet(r, "q")
    with pytest.raises(ValueError):
        s.add_many(["a"], [1], **flags)
    with pytest.raises(ValueError):
        s.add("a", 1, **flags)
    assert len(s) == 0


def test_add_flags(r, server_version):
    s = SortedSet(r, "q")
    s.add("a", 5)
    s.add("a", 1, nx=True)
    assert s.score("a") == 5
    s.add("b", 1, xx=True)
    assert "b" not in s
    s.add("a", 9, gt=True)
    assert s.score("a") == 9
    s.add("a", 3, gt=True)
    assert s.score("a") == 9
    s.add("a", 3, lt=True)
    assert s.score("a") == 3
    assert s.add_many(["a", "c"], [100, 1], nx=False) == 1
    assert s.score("a") == 100
    assert s.add_many(["a", "d"], [1, 1], xx=True) == 0
    assert s.score("a") == 1 and "d" not in s


@pytest.mark.parametrize(
    "policy, expected", [("update", 2.0), ("keep", 1.0), ("max", 2.0), ("min", 1.0)]
)
def test_duplicate_policy_in_constructor(r, policy, expected):
    s = SortedSet(r, "q", duplicates=policy)
    s.add("a", 1)
    s.add("a", 2)
    assert s.score("a") == expected
    s.add_many(["b"], [1])
    s.add_many(["b"], [2])
    assert s.score("b") == expected
    s.add("a", 0.5, xx=True)  # an explicit flag wins over the policy
    assert s.score("a") == 0.5


def test_constructor_validation(r):
    with pytest.raises(ValueError):
        SortedSet(r, "q", duplicates="sometimes")
    with pytest.raises(ValueError):
        SortedSet(r, "q", on_decode_error="ignore")
    with pytest.raises(ValueError):
        SortedSet(r, "q", chunk_size=0)


def test_server_error_is_raised_with_servers_words(r, errors):
    r.set("q", "a string")
    s = SortedSet(r, "q")
    # The client library's class and the server's words, then the operation and the key.
    with pytest.raises(errors.ResponseError, match=r"^WRONGTYPE .*\(ZADD on 'q'\)$"):
        s.add("a")
    with pytest.raises(errors.ResponseError, match=r"^WRONGTYPE .*\(ZADD on 'q'\) \[add_many: stored: none; "):
        s.add_many(["a", "b"] * 3000)
    with pytest.raises(errors.ResponseError, match=r"^WRONGTYPE .*\(ZPOPMIN on 'q'\)$"):
        s.take(3)
    with pytest.raises(errors.ResponseError, match=r"^WRONGTYPE .*\(ZPOPMIN on 'q'\)$"):
        list(s.drain())
    # A script's error names the script (the server's own words give only its SHA).
    with pytest.raises(errors.ResponseError, match=r"\(POP_DUE on 'q'\)$"):
        ScheduledSet(r, "q").take(3)
    with pytest.raises(errors.ResponseError, match=r"\(LEASE_STAGE on 'q'\)$"):
        s.take(3, lease=30)
    # The connections are clean afterwards.
    r.delete("q")
    assert s.add_many(["a", "b"]) == 2
    assert s.take(5) == ["a", "b"]


@pytest.mark.parametrize("cls", [SortedSet, ScheduledSet])
def test_drain_pops_everything_once_in_order(r, cls):
    s = cls(r, "q")
    n = 5500
    s.add_many(("m%05d" % i for i in range(n)), range(n))
    batches = list(s.drain(1000))
    got = [x for b in batches for x in b]
    assert got == ["m%05d" % i for i in range(n)]
    assert [len(b) for b in batches] == [1000] * 5 + [500]
    assert len(s) == 0
    assert list(s.drain()) == []


@pytest.mark.parametrize("cls", [SortedSet, ScheduledSet])
def test_drain_stopped_early_puts_the_inflight_batch_back(r, cls):
    s = cls(r, "q")
    s.add_many(("m%04d" % i for i in range(3000)), range(3000))
    it = s.drain(1000)
    first = next(it)
    it.close()
    assert first == ["m%04d" % i for i in range(1000)]
    assert len(s) == 2000
    assert s.peek() == "m1000"
    assert s.score("m1000") == 1000.0


@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("cls", [SortedSet, ScheduledSet])
def test_drain_stopped_early_puts_back_every_pop_in_flight(r, cls, window):
    s = cls(r, "q")
    total = 20000
    s.add_many(("m%05d" % i for i in range(total)), range(total))
    it = s.drain(1000, window=window)
    delivered = [x for _ in range(3) for x in next(it)]
    it.close()
    assert delivered == ["m%05d" % i for i in range(3000)]
    assert len(s) == total - len(delivered)  # every pop in flight was put back
    assert s.peek() == "m03000" and s.score("m03000") == 3000.0


@pytest.mark.parametrize("window", [1, 2, 4])
def test_drain_window_delivers_everything_once_in_order(r, window):
    s = SortedSet(r, "q")
    n = 10500
    s.add_many(("m%05d" % i for i in range(n)), range(n))
    batches = list(s.drain(500, window=window))
    assert [x for b in batches for x in b] == ["m%05d" % i for i in range(n)]
    assert [len(b) for b in batches] == [500] * 21
    assert len(s) == 0


@pytest.mark.parametrize("bad", [0, -1, "3", 1.5, True, None])
def test_drain_window_is_validated_before_anything_is_sent(r, bad):
    s = SortedSet(r, "q")
    s.add_many(["a", "b", "c"], [1, 2, 3])
    with pytest.raises(ValueError if isinstance(bad, int) and not isinstance(bad, bool) else TypeError,
                       match="window"):
        s.drain(1, window=bad)
    assert len(s) == 3


@pytest.mark.parametrize("window", [1, 3])
def test_drain_dead_letters_mid_stream_and_loses_nothing(r, window):
    """Dead-lettering a member (a ZADD on the drain's connection) while pops
    are in flight: their replies are read first, their items delivered."""
    s = SortedSet(r, "q", serializer=JSONSerializer(), dead_letter_key="{q}:bad")
    r.zadd("q", {('{"i":%d}' % i).encode(): i for i in range(100)})
    r.zadd("q", {b"{broken": 5.5})
    got = [x["i"] for batch in s.drain(10, window=window) for x in batch]
    assert got == list(range(100))
    assert r.zrange("{q}:bad", 0, -1) == [b"{broken"]
    assert len(s) == 0
    s.add("x", 1)
    assert s.take(5) == ["x"]  # the connection is clean


def test_scheduled_drain_leaves_future_items(r):
    s = ScheduledSet(r, "q")
    now = time.time()
    s.add_many(["a", "b", "later"], [now - 2, now - 1, now + 3600])
    assert list(s.drain(1)) == [["a"], ["b"]]
    assert len(s) == 1


def test_drain_and_take_validate(r):
    s = SortedSet(r, "q")
    with pytest.raises(ValueError):
        list(s.drain(0))


def test_on_decode_error_raise_keeps_good_items(r):
    s = SortedSet(r, "q", serializer=JSONSerializer(), on_decode_error="raise")
    r.zadd("q", {b'{"a":1}': 1, b"{broken": 2, b"[2]": 3})
    with pytest.raises(DeserializationError) as info:
        s.take(10)
    assert info.value.items == [{"a": 1}, [2]]
    assert [raw for raw, _ in info.value.failures] == [b"{broken"]
    assert len(s) == 0


def test_dead_letter_key_keeps_undeserializable_items(r):
    s = SortedSet(r, "q", serializer=JSONSerializer(), dead_letter_key="{q}:bad")
    r.zadd("q", {b'"ok"': 1, b"\xff\xfe": 2})
    assert s.take(10) == ["ok"]
    assert r.zrange("{q}:bad", 0, -1) == [b"\xff\xfe"]


def test_decode_responses_client(server, impl):
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushdb()
    seen = []

    class Upper:
        def dumps(self, item):
            return item.upper()

        def loads(self, s):
            seen.append(type(s))
            return s.lower()

    s = SortedSet(client, "q", serializer=Upper())
    s.add_many(["b", "a"], [2, 1])
    assert s.peek() == "a"
    assert s.take(5) == ["a", "b"]
    assert seen and all(t is str for t in seen)
    plain = SortedSet(client, "p")
    plain.add("x", 1)
    assert plain.score("x") == 1.0 and plain.pop() == "x"
    client.close()
