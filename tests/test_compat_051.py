"""The redset 0.5.1 contract, written against 0.5.1's public API only.

Nothing here uses a 1.0 addition: this is the suite that code written for
0.5.1 relies on. The one intended difference is that an explicit score of 0
is kept (0.5.1 replaced it with the scorer's value).
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections import namedtuple

import pytest

import redset
from redset import ScheduledSet, SortedSet, TimeSortedSet
from redset.exceptions import LockTimeout
from redset.interfaces import Serializer
from redset.locks import Lock
from redset.serializers import NamedtupleSerializer


class JsonSerializer(Serializer):
    def loads(self, s):
        return json.loads(s)

    def dumps(self, o):
        return json.dumps(o)


# -- imports ---------------------------------------------------------------------
def test_public_names_importable():
    import redset.sets

    ns: dict = {}
    exec("from redset.sets import *", ns)
    assert sorted(k for k in ns if not k.startswith("__")) == ["ScheduledSet", "SortedSet", "TimeSortedSet"]
    assert redset.SortedSet is redset.sets.SortedSet
    assert redset.TimeSortedSet is redset.sets.TimeSortedSet
    assert redset.ScheduledSet is redset.sets.ScheduledSet
    assert issubclass(TimeSortedSet, SortedSet) and issubclass(ScheduledSet, TimeSortedSet)
    assert issubclass(LockTimeout, Exception)


def test_version_is_pep440():
    assert re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", redset.__version__)


# -- SortedSet ---------------------------------------------------------------------
def test_add_returns_score_and_pop_lowest_first(r):
    s = SortedSet(r, "q")
    assert s.add("b", 2) == 2
    assert s.add("a", 1) == 1
    assert s.add("c", 3.5) == 3.5
    assert len(s) == 3
    assert s.pop() == "a"
    assert s.pop() == "b"
    assert s.pop() == "c"
    with pytest.raises(KeyError):
        s.pop()


def test_add_existing_updates_score_and_dedups(r):
    s = SortedSet(r, "q")
    s.add("x", 5)
    s.add("x", 1)
    s.add("x", 1)
    assert len(s) == 1
    assert s.score("x") == 1.0


def test_explicit_zero_score_is_kept(r):
    s = SortedSet(r, "q", scorer=lambda item: 10)
    assert s.add("z", 0) == 0
    assert s.score("z") == 0.0
    assert s.add("y") == 10
    assert s.score("y") == 10.0


def test_default_scorer_is_zero(r):
    s = SortedSet(r, "q")
    assert s.add("a") == 0
    assert s.score("a") == 0.0


def test_custom_scorer(r):
    s = SortedSet(r, "q", scorer=lambda item: len(item))
    s.add("ccc")
    s.add("a")
    s.add("bb")
    assert s.take(3) == ["a", "bb", "ccc"]


def test_default_serializer_returns_str(r):
    s = SortedSet(r, "q")
    s.add(0)
    assert s.pop() == "0"
    s.add(b"raw")
    assert s.pop() == "raw"
    s.add("h\u00e9llo")
    assert s.pop() == "h\u00e9llo"
    s.add(1.5)
    assert s.pop() == "1.5"


def test_serializer_without_methods_is_no_serializer(r):
    s = SortedSet(r, "q", serializer=object())
    s.add("a", 1)
    s.add(7, 2)
    assert s.take(5) == ["a", "7"]


def test_custom_serializer_roundtrip(r):
    s = SortedSet(r, "q", serializer=JsonSerializer())
    s.add({"a": 1}, 2)
    s.add([1, 2], 1)
    assert {"a": 1} in s
    assert s.score({"a": 1}) == 2.0
    assert s.peek() == [1, 2]
    assert s.take(2) == [[1, 2], {"a": 1}]


def test_take(r):
    s = SortedSet(r, "q")
    for i in range(10):
        s.add("i%d" % i, i)
    assert s.take(0) == []
    assert s.take(-3) == []
    assert s.take(3) == ["i0", "i1", "i2"]
    assert s.take(2) == ["i3", "i4"]
    # 0.5.1 passed num through int(); 1.0 refuses what is not an integer
    # (docs/migration.md) before asking the server.
    for bad in ("3", 2.9, True):
        with pytest.raises(TypeError, match="num must be an int"):
            s.take(bad)
    assert s.take(100) == ["i5", "i6", "i7", "i8", "i9"]
    assert s.take(5) == []
    assert len(s) == 0


def test_take_nonpositive_does_not_touch_server(r, monkeypatch):
    s = SortedSet(r, "q")
    s.add("a")

    def boom(*args, **kwargs):
        raise AssertionError("the server was asked")

    monkeypatch.setattr(type(s._io), "run", boom)
    assert s.take(0) == []
    assert s.take(-1) == []


def test_items_failing_to_deserialize_are_skipped_and_removed(r, caplog):
    s = SortedSet(r, "q", serializer=JsonSerializer())
    r.zadd("q", {b"not json": 1, b'"ok1"': 0, b'"ok2"': 2})
    with caplog.at_level(logging.ERROR, logger="redset"):
        assert s.take(10) == ["ok1", "ok2"]
    assert len(s) == 0
    assert any("not json" in rec.getMessage() for rec in caplog.records)


def test_pop_of_undeserializable_item_raises_keyerror(r):
    s = SortedSet(r, "q", serializer=JsonSerializer())
    r.zadd("q", {b"{bad": 1})
    with pytest.raises(KeyError):
        s.pop()
    assert len(s) == 0


def test_peek(r):
    s = SortedSet(r, "q")
    with pytest.raises(KeyError):
        s.peek()
    s.add("b", 2)
    s.add("a", 1)
    assert s.peek() == "a"
    assert s.peek(1) == "b"
    with pytest.raises(KeyError):
        s.peek(2)
    assert len(s) == 2


def test_score_and_peek_score_and_contains(r):
    s = SortedSet(r, "q")
    assert s.score("nope") is None
    assert s.peek_score() is None
    assert "nope" not in s
    s.add("a", 2.5)
    s.add("b", -1)
    assert s.score("a") == 2.5
    assert isinstance(s.score("a"), float)
    assert s.peek_score() == -1.0
    assert "a" in s and "b" in s


def test_discard_and_clear(r):
    s = SortedSet(r, "q")
    s.add("a")
    s.add("b")
    assert s.discard("a") is True
    assert s.discard("a") is False
    assert len(s) == 1
    assert s.clear()
    assert not s.clear()
    assert len(s) == 0


def test_repr_and_str(r):
    s = SortedSet(r, "myset")
    s.add("a")
    assert repr(s) == "<SortedSet name='myset', length=1>"
    assert str(s) == repr(s)
    assert repr(TimeSortedSet(r, "t")) == "<TimeSortedSet name='t', length=0>"
    assert repr(ScheduledSet(r, "u")) == "<ScheduledSet name='u', length=0>"


def test_attributes(r):
    ser = JsonSerializer()
    scorer = lambda item: 3  # noqa: E731
    s = SortedSet(r, "q", scorer=scorer, serializer=ser, lock_timeout=1, lock_expires=2)
    assert s.name == "q"
    with pytest.raises(AttributeError):
        s.name = "other"
    assert s.redis is r
    assert s.scorer is scorer
    assert s.serializer is ser
    assert isinstance(s.lock, Lock)
    assert s.lock.key == "q__lock"
    assert s.lock.timeout == 1 and s.lock.expires == 2


def test_name_is_the_key(r):
    s = SortedSet(r, "the:key")
    s.add("a", 1)
    assert r.zrange("the:key", 0, -1) == [b"a"]


# -- TimeSortedSet -------------------------------------------------------------------
def test_time_sorted_set_is_fifo_and_peek_score_is_add_time(r):
    s = TimeSortedSet(r, "t")
    before = time.time()
    s.add("first")
    time.sleep(0.01)
    s.add("second")
    after = time.time()
    score = s.peek_score()
    assert before <= score <= after
    lag = time.time() - s.peek_score()
    assert 0 <= lag < 5
    assert s.take(2) == ["first", "second"]


def test_time_sorted_set_explicit_score_and_scorer(r):
    s = TimeSortedSet(r, "t", scorer=lambda item: 42)
    assert s.add("a") == 42
    assert s.add("b", 7) == 7
    assert s.pop() == "b"


# -- ScheduledSet ----------------------------------------------------------------------
def test_scheduled_set_only_due_items(r):
    s = ScheduledSet(r, "s")
    now = time.time()
    s.add("past", now - 10)
    s.add("future", now + 3600)
    s.add("now")
    assert len(s) == 3
    assert s.available() == 2
    assert s.peek() == "past"
    assert s.peek(1) == "now"
    with pytest.raises(KeyError):
        s.peek(2)
    assert s.take(10) == ["past", "now"]
    with pytest.raises(KeyError):
        s.pop()
    assert s.peek_score() is None
    assert len(s) == 1
    assert s.available() == 0


def test_scheduled_set_item_becomes_due(r):
    s = ScheduledSet(r, "s")
    # A second's margin: on a loaded machine the add and the first pop of a
    # cluster client (which loads the script first) took more than 0.2 s.
    due = time.time() + 1.0
    s.add("soon", due)
    with pytest.raises(KeyError):
        s.pop()
    time.sleep(max(0.0, due - time.time()) + 0.05)
    assert s.pop() == "soon"


def test_scheduled_set_pop_order(r):
    s = ScheduledSet(r, "s")
    now = time.time()
    s.add("b", now - 1)
    s.add("a", now - 2)
    assert s.peek_score() == pytest.approx(now - 2)
    assert s.pop() == "a"
    assert s.pop() == "b"


# -- serializers -----------------------------------------------------------------------
Task = namedtuple("Task", ["id", "url"])


def test_namedtuple_serializer(r):
    s = SortedSet(r, "q", serializer=NamedtupleSerializer(Task))
    t = Task(1, "http://x")
    s.add(t, 1)
    assert t in s
    assert r.zrange("q", 0, -1) == [json.dumps(t._asdict()).encode()]
    assert s.pop() == t


def test_serializer_interface_is_abstract():
    with pytest.raises(TypeError):
        Serializer()  # type: ignore[abstract]


# -- Lock ------------------------------------------------------------------------------
def test_lock_defaults(r):
    lock = Lock(r, "k")
    assert (lock.expires, lock.timeout, lock.poll_interval) == (20, 10, 0.2)


def test_lock_excludes_and_times_out(r):
    with Lock(r, "k"):
        with pytest.raises(LockTimeout):
            with Lock(r, "k", timeout=0.3, poll_interval=0.05):
                pass  # pragma: no cover
    with Lock(r, "k", timeout=0.3):
        assert r.exists("k")
    assert not r.exists("k")


def test_expired_lock_can_be_taken(r):
    first = Lock(r, "k", expires=0.2)
    first.__enter__()
    with Lock(r, "k", timeout=2, poll_interval=0.05):
        # The first holder's late exit must not delete the new holder's lock.
        first.__exit__(None, None, None)
        assert r.exists("k")
    assert not r.exists("k")


def test_set_lock_is_usable(r):
    s = SortedSet(r, "q", lock_timeout=0.2)
    with s.lock:
        assert r.exists("q__lock")
    assert not r.exists("q__lock")


def test_custom_loads_receives_str(r):
    seen = []

    class Split:
        def dumps(self, item):
            return ",".join(item)

        def loads(self, s):
            seen.append(type(s))
            return s.split(",")

    s = SortedSet(r, "q", serializer=Split())
    s.add(["a", "b"], 1)
    s.add(["c"], 2)
    assert s.peek() == ["a", "b"]
    assert s.take(2) == [["a", "b"], ["c"]]
    assert seen and all(t is str for t in seen)


def test_builtin_callables_as_serializer_methods(r):
    class Ser(Serializer):
        loads = int
        dumps = str

    s = SortedSet(r, "q", scorer=lambda i: i * -1, serializer=Ser())
    for i in range(5):
        s.add(i)
    assert s.take(5) == [4, 3, 2, 1, 0]


def test_set_lock_expires_and_times_out_like_051(r):
    holder = SortedSet(r, "q", lock_expires=10)
    chump = SortedSet(r, "q", lock_timeout=0.001, lock_expires=0.001)
    with holder.lock:
        with pytest.raises(LockTimeout):
            with chump.lock:
                pass  # pragma: no cover
    got = False
    with chump.lock:
        with holder.lock:  # chump's lock expired after 1 ms
            got = True
    assert got
