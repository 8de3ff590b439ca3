"""Plans that add: ``add``, ``add_many`` with its window of chunks, wake-ups.

Waking blocked consumers: consumers that cannot block on the set itself
(leased takes, and every ScheduledSet wait) register in ``{name}:waiters``
(token -> end of the wait) and block on the list ``{name}:wake``. A producer
asks, after its add, how many live waiters there are (a read) and pushes
that many tokens only if there are any, so an add costs no write when nobody
waits. A waiter registers before it looks for work one last time, so an add
either comes before that look or sees the registration.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Deque, Iterable, List, Optional, Tuple


from redset import scripts
from redset._core.calls import call, call_many, follow, retry_delay, script
from redset._core.config import Chunk, SetConfig
from redset._core import kinds
from redset._core.errors import named_error
from redset._core.steps import RECV_RAW, SAFE, Cmd, NotSent, Plan, Redirected, Send, Sleep
from redset.exceptions import AddOutcome, with_outcome

__all__ = ["add", "add_many", "wake", "WAKE_TOKEN_TTL_MS"]

log = logging.getLogger("redset.sets")

# How many ZADD chunks may be in flight while the next is encoded.
ADD_WINDOW = 8
#: Milliseconds a wake token outlives the last push (tokens of waiters that
#: gave up must not pile up).
WAKE_TOKEN_TTL_MS = 10000


def waiting_query(cfg: SetConfig) -> Tuple[Any, ...]:
    """How many consumers wait for work now (a read)."""
    return ("ZCOUNT", cfg._waiters_key, cfg._wire_impl.format_score(time.time()), "+inf")


def wake(cfg: SetConfig, count: int) -> Plan[None]:
    """Wake up to ``count`` blocked consumers, if any wait (best effort)."""
    try:
        waiting = int((yield from call(cfg._wire_impl, waiting_query(cfg))))
    except kinds.RESPONSE + kinds.NETWORK as exc:
        log.warning("items were added to %s, but waking blocked consumers failed: %s", cfg.name, exc)
        return
    if waiting:
        yield from push_wake(cfg, waiting, count)


def push_wake(cfg: SetConfig, waiting: int, count: int) -> Plan[None]:
    """Leave one token per waiter to wake (at most ``waiting``) on the wake list.

    Best effort, after the add succeeded: the add must not be reported as
    failed because its wake-up was refused (a server at maxmemory takes the
    ZADD that crosses the limit and refuses the RPUSH after it). A consumer
    that misses a wake-up still wakes at its next due time, lease expiry or
    wait slice. Tokens left by waiters that gave up expire with the list.
    """
    tokens = max(1, min(waiting, count))
    try:
        yield from call_many(cfg._wire_impl, (
            ("RPUSH", cfg._wake_key) + (1,) * tokens,
            ("LTRIM", cfg._wake_key, -waiting, -1),
            ("PEXPIRE", cfg._wake_key, WAKE_TOKEN_TTL_MS),
        ))
    except kinds.RESPONSE + kinds.NETWORK as exc:
        log.warning("items were added to %s, but waking blocked consumers failed: %s", cfg.name, exc)


def add(cfg: SetConfig, item: Any, score: Any, flags: Tuple[bytes, ...]) -> Plan[Any]:
    """Add one item; return the score used."""
    if cfg._shard_sets is not None:
        return (yield from sharding.add(cfg, item, score, flags))
    if score is None:
        score = cfg.scorer(item)
    wire = cfg._wire_impl
    encoded_score = wire.format_score(score)
    member = wire.encode_member(cfg._codec, cfg._dumps, item)
    if cfg.leased:
        yield from add_unless_inflight(cfg, flags, [encoded_score, member])
        yield from wake(cfg, 1)
    else:
        # The add and the question "does any consumer wait?" in one round
        # trip; the wake list is written only when one does.
        replies = yield from call_many(
            wire, (("ZADD", cfg._key) + flags + (encoded_score, member), waiting_query(cfg)))
        if int(replies[1]):
            yield from push_wake(cfg, int(replies[1]), 1)
    return score


def add_unless_inflight(cfg: SetConfig, flags: Tuple[bytes, ...], pairs: List[Any]) -> Plan[int]:
    keys = (cfg._key, cfg._index_key)
    return int((yield from script(cfg._wire_impl, scripts.ADD_UNLESS_INFLIGHT, keys, [b" ".join(flags)] + pairs)))


def add_many(cfg: SetConfig, items: Iterable[Any], scores: Optional[Iterable[Any]],
             flags: Tuple[bytes, ...], start: int = 0, wake_up: bool = True) -> Plan[int]:
    """Add every item, chunked; return the number of new members.

    ``start``: the index of ``items[0]`` in the caller's whole input (error
    messages and outcomes name input indices). ``wake_up``: wake waiting
    consumers at the end (a sharded set wakes once, after all its rounds).
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.add_many(cfg, items, scores, flags, start))
    chunks = cfg._chunks(items, scores, start)
    if cfg.leased:
        added = yield from _add_many_unless_inflight(cfg, flags, chunks, start)
    else:
        added = yield from zadd_window(cfg, flags, chunks, start)
    if wake_up and (added or flags != (b"NX",)):
        # New members, or scores that may have moved earlier: tell waiters.
        yield from wake(cfg, added or 1)
    return added


def _add_many_unless_inflight(cfg: SetConfig, flags: Tuple[bytes, ...], chunks: Iterable[Chunk],
                              start: int) -> Plan[int]:
    """One script call per chunk (adds skip items in flight)."""
    wire = cfg._wire_impl
    outcome = AddOutcome()
    outcome.consumed = sent_to = start
    it = iter(chunks)
    while True:
        try:
            chunk = next(it, None)
            if chunk is None:
                return outcome.added
            items, scores, offset = chunk
            _consumed(outcome, offset, len(items))
            pairs: List[Any] = []
            for i in range(len(items)):
                pairs.append(wire.format_score(scores[i], offset + i, sent_to - start))
                pairs.append(wire.encode_member(cfg._codec, cfg._dumps, items[i], offset + i, sent_to - start))
        except Exception as exc:
            outcome.not_sent_from = sent_to
            raise with_outcome(exc, outcome) from None
        sent_to = offset + len(items)
        try:
            outcome.added += yield from add_unless_inflight(cfg, flags, pairs)
        except kinds.RESPONSE as exc:
            AddOutcome._append(outcome.refused, offset, sent_to)
            outcome.not_sent_from = sent_to
            raise with_outcome(exc, outcome) from None
        except kinds.NETWORK as exc:
            AddOutcome._append(outcome.unknown, offset, sent_to)
            outcome.not_sent_from = sent_to
            raise with_outcome(exc, outcome) from None
        AddOutcome._append(outcome.stored, offset, sent_to)


def _consumed(outcome: AddOutcome, offset: int, n: int) -> None:
    outcome.consumed = max(outcome.consumed, offset + n)


def zadd_window(cfg: SetConfig, flags: Tuple[bytes, ...], chunks: Iterable[Chunk], start: int) -> Plan[int]:
    """ZADD every chunk with up to :data:`ADD_WINDOW` chunks in flight.

    Encoding a chunk overlaps the server's work on earlier ones. A chunk is
    encoded whole before any byte of it is sent. ZADD is idempotent, so after
    a lost connection every chunk not yet acknowledged is re-sent. (The count
    of new members then misses those whose first ZADD applied but whose reply
    was lost.) Whatever ends the call early, every chunk in flight is
    settled first, and the exception carries an :class:`AddOutcome`.
    """
    wire = cfg._wire_impl
    key, codec, dumps = cfg._key, cfg._codec, cfg._dumps
    pack = wire.pack_zadd
    outcome = AddOutcome()
    outcome.consumed = sent_to = start  # sent_to: the index after the last item sent
    attempt = redirects = 0
    resend = False  # the chunks in flight were refused by a cluster node
    inflight: Deque[Tuple[Cmd, int, int]] = deque()  # (command, offset, item count)
    server_error: Optional[BaseException] = None
    input_error: Optional[BaseException] = None
    it = iter(chunks)
    exhausted = False
    while True:
        try:
            if resend:
                resend = False
                yield Send([c for c, _, _ in inflight])
            while not exhausted and input_error is None and server_error is None \
                    and len(inflight) < ADD_WINDOW:
                try:
                    chunk = next(it, None)
                    if chunk is None:
                        exhausted = True
                        break
                    items, scores, offset = chunk
                    _consumed(outcome, offset, len(items))
                    data = pack(key, flags, items, scores, codec, dumps, offset, sent_to - start)
                except Exception as exc:  # bad input: stop sending, settle what is in flight
                    input_error = exc
                    break
                cmd = Cmd(data, make_args=_zadd_args(wire, key, flags, items, scores, codec, dumps, offset))
                inflight.append((cmd, offset, len(items)))
                sent_to = offset + len(items)
                yield Send([cmd])
            if not inflight:
                break
            reply = yield RECV_RAW
            _, offset, n = inflight.popleft()
            if isinstance(reply, kinds.RESPONSE):
                AddOutcome._append(outcome.refused, offset, offset + n)
                server_error = server_error or named_error(reply, ["ZADD", key])
            else:
                AddOutcome._append(outcome.stored, offset, offset + n)
                outcome.added += int(reply)
        except Redirected as exc:  # none of the chunks in flight ran
            redirects = yield from follow(exc, redirects, ["ZADD", key])
            resend = True
        except (NotSent,) + kinds.NETWORK as exc:
            error = _unwrap(exc)
            while True:
                delay = retry_delay(attempt, error)
                if delay is None:
                    for _, offset, n in inflight:
                        AddOutcome._append(outcome.unknown, offset, offset + n)
                    outcome.not_sent_from = sent_to
                    raise with_outcome(error, outcome) from None
                attempt += 1
                yield Sleep(delay)
                if not inflight:
                    break
                try:
                    yield Send([c for c, _, _ in inflight])
                    break
                except (NotSent,) + kinds.NETWORK as again:
                    error = _unwrap(again)
    final = input_error or server_error
    if final is not None:
        outcome.not_sent_from = sent_to
        raise with_outcome(final, outcome) from None
    return outcome.added


def _unwrap(exc: BaseException) -> BaseException:
    return exc.error if isinstance(exc, NotSent) else exc


def _zadd_args(wire: Any, key: bytes, flags: Tuple[bytes, ...], items: Any, scores: Any, codec: int,
               dumps: Any, offset: int) -> Any:
    """The arguments of a chunk's ZADD, for drivers that call ``execute_command``."""
    def make() -> List[Any]:
        args: List[Any] = ["ZADD", key]
        args.extend(flags)
        for i in range(len(items)):
            args.append(wire.format_score(scores[i], offset + i))
            args.append(wire.encode_member(codec, dumps, items[i], offset + i))
        return args
    return make


__all__ += ["SAFE"]


# Last: the sharded plans build on the plans above.
from redset._core import sharding  # noqa: E402
