"""Plans on scripted replies, without a server.

A plan yields requests and is sent answers; :func:`play` is a driver that
answers from a script instead of a socket, so what a plan sends, what it
re-sends after a lost connection, and what it raises can be checked exactly.
Every test runs on both codecs (``impl_module``).
"""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pytest
import redis
from redis.exceptions import BusyLoadingError, NoScriptError, ResponseError

from redset import ScheduledSet, SortedSet
from redset._core import adds, calls, pops, reads
from redset._core.steps import (
    PAIRS, POP, RAW, SAFE, Cancelled, Deliver, NotSent, Recv, Redirected, Send, Sleep, StopDelivery,
)
from redset.exceptions import PopOutcomeUnknown


class Throw:
    """An answer that is an exception thrown into the plan (a lost connection,
    a cancellation), not a reply. An error *reply* is answered as a value, as
    the drivers do."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def play(plan: Any, answer: Callable[[Any, List[Any]], Any]) -> Tuple[Any, List[Any]]:
    """Run ``plan`` to its end; ``answer(request, log)`` returns the answer to
    each request, or :class:`Throw`. Returns (the plan's result, every
    request it made)."""
    log: List[Any] = []
    reply: Any = None
    error: Any = None
    while True:
        try:
            req = plan.send(reply) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value, log
        log.append(req)
        reply = error = None
        got = answer(req, log)
        if isinstance(got, Throw):
            error = got.error
        else:
            reply = got


def args_of(log: List[Any]) -> List[Tuple[Any, ...]]:
    """The commands a plan sent, as argument tuples of bytes."""
    out = []
    for req in log:
        if isinstance(req, Send):
            for cmd in req.cmds:
                out.append(tuple(a if isinstance(a, bytes) else str(a).encode() for a in cmd.args))
    return out


@pytest.fixture
def make_set(impl_module: Any) -> Callable[..., Any]:
    """A set whose client is never used: plans run on the script."""

    def make(cls: Any = SortedSet, **kwargs: Any) -> Any:
        s = cls(redis.Redis(port=1), "q", **kwargs)
        s._wire = impl_module
        return s

    return make


def zadd_replies(counts: List[Any]) -> Callable[[Any, List[Any]], Any]:
    """Answer each RAW read with the next count (or error), and the waiter query with 0."""
    queue = list(counts)

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            assert req.mode == RAW
            last = args_of(log)
            pending = [a for a in last if a[0] == b"ZADD"]
            if last and last[-1][0] == b"ZCOUNT" and not queue:
                return 0
            return queue.pop(0) if pending else 0
        return None

    return answer


def test_add_many_keeps_a_window_of_chunks_and_counts_new(make_set):
    s = make_set(chunk_size=2)
    added, log = play(adds.add_many(s, ["a", "b", "c", "d", "e"], [1, 2, 3, 4, 5], (b"NX",)),
                      zadd_replies([2, 1, 1]))
    assert added == 4
    sent = args_of(log)
    zadds = [a for a in sent if a[0] == b"ZADD"]
    assert zadds == [
        (b"ZADD", b"q", b"NX", b"1", b"a", b"2", b"b"),
        (b"ZADD", b"q", b"NX", b"3", b"c", b"4", b"d"),
        (b"ZADD", b"q", b"NX", b"5", b"e"),
    ]
    # All three chunks are written before the first reply is read.
    first_recv = next(i for i, r in enumerate(log) if isinstance(r, Recv))
    assert sum(isinstance(r, Send) for r in log[:first_recv]) == 3
    assert sent[-1][0] == b"ZCOUNT"  # then asks whether anybody waits (nobody: no push)


def test_add_many_resends_unanswered_chunks_after_a_lost_connection(make_set):
    s = make_set(chunk_size=2)
    state = {"broke": False}

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            zadd_reads = sum(1 for r in log if isinstance(r, Recv))
            if zadd_reads == 2 and not state["broke"]:
                state["broke"] = True
                return Throw(redis.ConnectionError("reset by peer"))
            return 1 if args_of(log)[-1][0] != b"ZCOUNT" else 0
        return None

    added, log = play(adds.add_many(s, ["a", "b", "c", "d"], [1, 2, 3, 4], (b"NX",)), answer)
    sends = [a for a in args_of(log) if a[0] == b"ZADD"]
    assert sends[-1] == (b"ZADD", b"q", b"NX", b"3", b"c", b"4", b"d")  # the unanswered chunk, again
    assert len(sends) == 3
    assert any(isinstance(r, Sleep) for r in log)  # a backoff before the re-send
    assert added == 2


def test_add_many_error_says_what_is_stored_refused_and_unknown(make_set):
    s = make_set(chunk_size=2)
    oom = redis.exceptions.OutOfMemoryError("OOM command not allowed")

    def answer(req: Any, log: List[Any]) -> Any:
        if not isinstance(req, Recv):
            return None
        n = sum(1 for r in log if isinstance(r, Recv))
        return {1: 2, 2: oom, 3: 1}.get(n, 0)

    with pytest.raises(redis.exceptions.OutOfMemoryError) as info:
        play(adds.add_many(s, list("abcdef"), [1, 2, 3, 4, 5, 6], (b"NX",)), answer)
    outcome = info.value.outcome
    assert outcome.stored == [(0, 2), (4, 6)]  # the chunk in flight was settled too
    assert outcome.refused == [(2, 4)]
    assert outcome.unknown == []
    assert "'q'" in str(info.value) and "ZADD" in str(info.value)


def test_add_many_gives_up_with_the_unknown_chunks_named(make_set):
    s = make_set(chunk_size=2)

    def answer(req: Any, log: List[Any]) -> Any:
        if not isinstance(req, Recv):
            return None
        return 2 if sum(1 for r in log if isinstance(r, Recv)) == 1 else Throw(redis.ConnectionError("gone"))

    with pytest.raises(redis.ConnectionError) as info:
        play(adds.add_many(s, list("abcdef"), [1, 2, 3, 4, 5, 6], (b"NX",)), answer)
    outcome = info.value.outcome
    assert outcome.stored == [(0, 2)]
    assert outcome.unknown == [(2, 6)]  # sent, never answered, re-sent twice: it may have applied
    assert outcome.retry_ranges() == [(2, 6)]


def test_a_pop_is_never_resent(make_set):
    s = make_set()

    def answer(req: Any, log: List[Any]) -> Any:
        return Throw(redis.ConnectionError("reset")) if isinstance(req, Recv) else None

    with pytest.raises(PopOutcomeUnknown, match="'q'"):
        play(pops.take(s, 10, None, None, None), answer)


def test_take_decodes_through_a_pop_read(make_set):
    s = make_set()

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            assert req.mode == POP
            return (["x", "y"], [])
        return None

    items, log = play(pops.take(s, 2, None, None, None), answer)
    assert items == ["x", "y"]
    assert args_of(log) == [(b"ZPOPMIN", b"q", b"2")]


def test_a_connection_that_never_opened_is_retried_for_reads_only(make_set):
    s = make_set()
    tries = []

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Send):
            tries.append(req)
            return Throw(NotSent(redis.ConnectionError("refused"))) if len(tries) < 3 else None
        return 5

    count, log = play(reads.count(s), answer)
    assert count == 5 and len(tries) == 3
    assert [r.seconds for r in log if isinstance(r, Sleep)] == [calls.RETRY_BACKOFF, 2 * calls.RETRY_BACKOFF]


def test_loading_server_is_waited_for(make_set):
    s = make_set()
    # redis-py raises -LOADING (a ConnectionError subclass): a driver throws it in.
    answers = [Throw(BusyLoadingError("LOADING")), Throw(BusyLoadingError("LOADING")), 7]

    def answer(req: Any, log: List[Any]) -> Any:
        return answers.pop(0) if isinstance(req, Recv) else None

    count, log = play(reads.count(s), answer)
    assert count == 7
    assert [r.seconds for r in log if isinstance(r, Sleep)] == [calls.LOADING_POLL] * 2


def test_noscript_loads_the_script_and_calls_again(make_set):
    s = make_set(cls=ScheduledSet)
    state = {"loaded": False}

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Send):
            if args_of([req])[0][:2] == (b"SCRIPT", b"LOAD"):
                state["loaded"] = True
            return None
        if req.mode == POP:
            return (["due"], []) if state["loaded"] else NoScriptError("NOSCRIPT No matching script")
        return b"sha"

    items, log = play(pops.take(s, 1, None, None, None), answer)
    assert items == ["due"]
    names = [a[0] for a in args_of(log)]
    assert names == [b"EVALSHA", b"SCRIPT", b"EVALSHA"]


def test_server_error_names_key_and_operation(make_set):
    s = make_set()

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            return ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        return None

    with pytest.raises(ResponseError, match=r"ZCARD.*'q'|'q'.*ZCARD"):
        play(reads.count(s), answer)


def test_cancelled_pop_reads_its_reply_and_puts_items_back(make_set):
    s = make_set()

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv) and req.mode == POP:
            return Throw(Cancelled())  # the task was cancelled while the reply was awaited
        if isinstance(req, Recv) and req.mode == PAIRS:
            return [(b"x", 1.0), (b"y", 2.0)]
        return 1 if isinstance(req, Recv) else None

    with pytest.raises(Cancelled):
        play(pops.take(s, 2, None, None, None), answer)
    # (the log is lost with the exception: run again, recording)
    log: List[Any] = []

    def recording(req: Any, seen: List[Any]) -> Any:
        log.append(req)
        return answer(req, seen)

    with pytest.raises(Cancelled):
        play(pops.take(s, 2, None, None, None), recording)
    assert args_of(log)[-1] == (b"ZADD", b"q", b"NX", b"1.0", b"x", b"2.0", b"y")


@pytest.mark.parametrize("window", [1, 3])
def test_drain_stopped_early_puts_the_pop_in_flight_back(make_set, window):
    s = make_set()
    delivered: List[Any] = []
    ahead_sent: List[Any] = []
    in_flight = [(b"c", 3.0), (b"d", 4.0), (b"e", 5.0)][:window]

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Deliver):
            delivered.append(req.value)
            return Throw(StopDelivery())  # the caller broke out of its loop
        if isinstance(req, Recv) and req.mode == POP:
            if req.ahead is not None:
                # a full batch: the plan fills its window now
                ahead_sent.extend(req.ahead(2) or [])
            return (["a", "b"], [])
        if isinstance(req, Recv) and req.mode == PAIRS:
            return [in_flight.pop(0)]
        return 1 if isinstance(req, Recv) else None

    _, log = play(pops.drain(s, 2, window), answer)
    assert delivered == [["a", "b"]]
    assert len(ahead_sent) == window and not in_flight  # every pop in flight was read
    sent = args_of(log)
    back = [b"ZADD", b"q", b"NX"]
    for member, score in [(b"c", b"3.0"), (b"d", b"4.0"), (b"e", b"5.0")][:window]:
        back += [score, member]
    assert sent[-1] == tuple(back)


class FakeServer:
    """Answers a drain as a server would, one reply per command in order:
    ZPOPMIN runs when its reply is read (the server works through the
    pipeline in order), ZADD puts members back. Counts the pops in flight:
    sent (by a Send, or by ``ahead``) and not read yet."""

    def __init__(self, members: List[Tuple[bytes, float]], bad: Tuple[bytes, ...] = ()) -> None:
        self.zset = dict(members)
        self.bad = bad  # members a POP read reports as failing to decode
        self.others: dict = {}  # other keys ZADD wrote to: {key: {member: score}}
        self.queue: List[Tuple[Any, ...]] = []  # commands sent, no reply read yet
        self.delivered: List[Any] = []
        self.max_waiting = 0  # pops in flight while a reply's header was awaited
        self.max_behind = 0  # pops in flight behind the reply being received
        self.pops = 0
        self.on_pop: Any = None  # called with each pop's reply, before it is read

    def send(self, cmds: Any) -> None:
        for cmd in cmds:
            self.queue.append(tuple(a if isinstance(a, bytes) else str(a).encode() for a in cmd.args))

    def run_next(self) -> Any:
        args = self.queue.pop(0)
        if args[0] == b"ZADD":
            target = self.zset if args[1] == b"q" else self.others.setdefault(args[1], {})
            rest = args[3:] if args[2] == b"NX" else args[2:]
            for score, member in zip(rest[0::2], rest[1::2]):
                target.setdefault(member, float(score))
            return 0
        assert args[0] == b"ZPOPMIN"
        self.pops += 1
        popped = sorted(self.zset.items(), key=lambda kv: (kv[1], kv[0]))[:int(args[2])]
        for member, _ in popped:
            del self.zset[member]
        if self.on_pop is not None:
            self.on_pop(popped)
        return popped

    def answer(self, req: Any, log: List[Any]) -> Any:
        if isinstance(req, Send):
            self.send(req.cmds)
            return None
        if isinstance(req, Deliver):
            self.delivered.append(req.value)
            return None
        assert isinstance(req, Recv)
        self.max_waiting = max(self.max_waiting, len(self.queue))
        is_pop = self.queue[0][0] == b"ZPOPMIN"
        assert is_pop == (req.mode != RAW), "a %s reply read in mode %s" % (self.queue[0][0], req.mode)
        popped = self.run_next()
        if req.mode in (RAW, PAIRS):
            return popped
        if req.ahead is not None:  # the header is here: what does the plan send now?
            self.send(req.ahead(len(popped)) or [])
            self.max_behind = max(self.max_behind, len(self.queue))
        failures = [(m, ValueError("bad")) for m, _ in popped if m in self.bad]
        return ([m.decode() for m, _ in popped if m not in self.bad], failures)


@pytest.mark.parametrize("window", [1, 3, 4])
def test_drain_keeps_at_most_window_pops_in_flight(make_set, window):
    s = make_set()
    server = FakeServer([(b"m%04d" % i, float(i)) for i in range(205)])
    play(pops.drain(s, 10, window), server.answer)
    got = [x for batch in server.delivered for x in batch]
    assert got == ["m%04d" % i for i in range(205)]
    assert server.max_behind == window  # topped up to the window, never past it
    assert server.max_waiting <= window
    # 21 pops hold items; after the short 21st, only the pops already in
    # flight behind it are read: no new one is sent.
    assert server.pops == 21 + window - 1
    assert not server.queue and not server.zset


@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("stop_after", [1, 4])
def test_drain_stopped_early_puts_back_every_pop_in_flight(make_set, window, stop_after):
    s = make_set()
    total = 200
    server = FakeServer([(b"m%04d" % i, float(i)) for i in range(total)])

    def answer(req: Any, log: List[Any]) -> Any:
        got = server.answer(req, log)
        if isinstance(req, Deliver) and len(server.delivered) == stop_after:
            return Throw(StopDelivery())
        return got

    play(pops.drain(s, 10, window), answer)
    delivered = [x for batch in server.delivered for x in batch]
    assert len(delivered) == 10 * stop_after
    assert not server.queue  # every pop in flight was read
    assert len(server.zset) == total - len(delivered)  # and its items are back, at their scores
    assert server.zset == {b"m%04d" % i: float(i) for i in range(len(delivered), total)}


@pytest.mark.parametrize("window", [1, 3])
def test_drain_delivers_what_the_pops_in_flight_find_after_a_short_one(make_set, window):
    """Items added while the pops behind a short reply are in flight are
    delivered (or stay in the set): never lost."""
    s = make_set()
    server = FakeServer([(b"m%04d" % i, float(i)) for i in range(35)])
    added: List[bytes] = []

    def add_after_short(popped: List[Any]) -> None:
        if len(popped) < 10 and not added:  # a producer adds right after the short pop
            for i in range(25):
                server.zset[b"late%02d" % i] = 1000.0 + i
                added.append(b"late%02d" % i)

    server.on_pop = add_after_short
    play(pops.drain(s, 10, window), server.answer)
    delivered = [x for batch in server.delivered for x in batch]
    assert delivered[:35] == ["m%04d" % i for i in range(35)]
    late = delivered[35:]
    assert len(late) == min(25, 10 * (window - 1))  # what the pops already in flight brought back
    assert sorted(late + [m.decode() for m in server.zset]) == [m.decode() for m in added]
    assert not server.queue


def test_retry_policy_gives_up_after_two_resends():
    exc = redis.ConnectionError("x")
    assert [calls.retry_delay(i, exc) for i in range(3)] == [calls.RETRY_BACKOFF, 2 * calls.RETRY_BACKOFF, None]
    assert calls.retry_delay(50, BusyLoadingError("LOADING")) == calls.LOADING_POLL
    assert SAFE == 0


# -- cluster refusals: what was refused is re-sent, whatever its kind ---------------------


def _moved() -> Redirected:
    return Redirected(redis.exceptions.MovedError("5798 127.0.0.1:7001"))


def test_refused_pop_is_resent_once_refused_never_counted_as_unknown(make_set):
    """A pop refused by a cluster node did not run: unlike a lost
    connection, it is sent again (to where the driver now routes it)."""
    s = make_set()
    state = {"refused": False}

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            if not state["refused"]:
                state["refused"] = True
                return Throw(_moved())
            return (["a"], [])
        return None

    (items, failures), log = play(calls.pop(s._wire, ("ZPOPMIN", "q", 1), 0, None), answer)
    assert items == ["a"] and failures == []
    assert [a[0] for a in args_of(log)] == [b"ZPOPMIN", b"ZPOPMIN"]
    assert not any(isinstance(r, Sleep) for r in log)  # MOVED: no pause


def test_refused_commands_without_a_reply_are_resent_and_earlier_replies_kept(make_set):
    s = make_set()
    reads = {"n": 0}

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            reads["n"] += 1
            if reads["n"] == 2:  # the second of three: it and the third were refused
                return Throw(Redirected(redis.exceptions.TryAgainError("Multiple keys request"), 0.05))
            return reads["n"]
        return None

    replies, log = play(calls.call_many(s._wire, [("ZCARD", "a"), ("ZCARD", "b"), ("ZCARD", "c")]), answer)
    assert replies == [1, 3, 4]
    sends = [r for r in log if isinstance(r, Send)]
    assert [len(r.cmds) for r in sends] == [3, 2]  # only the two without a reply
    assert any(isinstance(r, Sleep) and r.seconds == 0.05 for r in log)  # TRYAGAIN: pause first


def test_refusals_past_the_limit_raise_the_last_naming_the_key(make_set):
    s = make_set()

    def answer(req: Any, log: List[Any]) -> Any:
        return Throw(_moved()) if isinstance(req, Recv) else None

    with pytest.raises(redis.exceptions.MovedError, match="ZPOPMIN on 'q'"):
        play(calls.pop(s._wire, ("ZPOPMIN", "q", 1), 0, None), answer)


def test_cancelled_pop_that_was_refused_puts_nothing_back(make_set):
    """Cancelled with a pop in flight, the plan reads its reply to put the items
    back; a refused pop did not run, so there is nothing to put back and the
    cancellation goes on."""
    s = make_set()
    state = {"n": 0}

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            state["n"] += 1
            return Throw(Cancelled() if state["n"] == 1 else _moved())
        return None

    log: List[Any] = []

    def logged(req: Any, _: List[Any]) -> Any:
        log.append(req)
        return answer(req, log)

    with pytest.raises(Cancelled):
        play(calls.pop(s._wire, ("ZPOPMIN", "q", 1), 0, None), logged)
    assert [a[0] for a in args_of(log)] == [b"ZPOPMIN"]  # no ZADD: nothing to put back
    assert [r.mode for r in log if isinstance(r, Recv)] == [POP, PAIRS]


def test_drain_resends_every_pop_in_flight_when_refused(make_set):
    s = make_set()
    state = {"n": 0}

    def answer(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Recv):
            state["n"] += 1
            if state["n"] == 1:
                return Throw(_moved())
            return (["x"], []) if state["n"] == 2 else ([], [])
        return None

    delivered: List[Any] = []

    def run(req: Any, log: List[Any]) -> Any:
        if isinstance(req, Deliver):
            delivered.append(req.value)
            return None
        return answer(req, log)

    _, log = play(pops.drain(s, 2), run)
    assert delivered == [["x"]]
    assert [a[0] for a in args_of(log)] == [b"ZPOPMIN", b"ZPOPMIN"]


@pytest.mark.parametrize("window", [1, 3])
def test_drain_reads_the_pops_in_flight_before_dead_lettering(make_set, window):
    """A batch with members that fail to decode is dead-lettered with a ZADD
    on the drain's connection: the pops in flight are read first (so the
    ZADD's reply is its own), and their items are delivered afterwards."""
    s = make_set(dead_letter_key="{q}:bad")
    server = FakeServer([(b"m%04d" % i, float(i)) for i in range(45)], bad=(b"m0003",))
    play(pops.drain(s, 10, window), server.answer)
    delivered = [x for batch in server.delivered for x in batch]
    assert delivered == ["m%04d" % i for i in range(45) if i != 3]
    assert list(server.others[b"{q}:bad"]) == [b"m0003"]
    assert not server.queue and not server.zset
