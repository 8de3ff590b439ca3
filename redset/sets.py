"""Redis-backed sorted sets for sharing work between processes.

``SortedSet`` pops the lowest score first; ``TimeSortedSet`` scores by add
time (FIFO); ``ScheduledSet`` only hands out items whose time has come.
All three deduplicate: a member is stored once however often it is added.
"""
from __future__ import annotations

import itertools
import logging
import time
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import redis.exceptions

from redset import _wire, scripts
from redset._checks import check_count, require_sync_client
from redset._transport import Chunk, Transport, make_transport
from redset.exceptions import DeserializationError, StaleLeaseError
from redset.leases import Consumer, Lease, lease_keys, new_token
from redset.locks import Lock
from redset.serializers import CODEC_CUSTOM, CODEC_DEFAULT, codec_of

log = logging.getLogger(__name__)

__all__ = ("SortedSet", "TimeSortedSet", "ScheduledSet")

#: Items per ZADD command in :meth:`SortedSet.add_many`.
DEFAULT_CHUNK_SIZE = 1000

_DUPLICATE_POLICIES = {
    "update": (False, False, False, False),  # replace the score (plain ZADD)
    "keep": (True, False, False, False),  # keep the first score (ZADD NX)
    "max": (False, False, True, False),  # keep the higher score (ZADD GT)
    "min": (False, False, False, True),  # keep the lower score (ZADD LT)
}
_DECODE_ERROR_POLICIES = ("skip", "raise")


def _default_scorer(item: Any) -> float:
    return 0


def _time_scorer(item: Any) -> float:
    return time.time()


def _zadd_flags(nx: bool, xx: bool, gt: bool, lt: bool) -> Tuple[bytes, ...]:
    """Check a combination of ZADD flags and return them as arguments.

    :raises ValueError: for combinations the server rejects.
    """
    if nx and (xx or gt or lt):
        raise ValueError("nx cannot be combined with xx, gt or lt")
    if gt and lt:
        raise ValueError("gt and lt cannot be combined")
    flags = []
    if nx:
        flags.append(b"NX")
    if xx:
        flags.append(b"XX")
    if gt:
        flags.append(b"GT")
    if lt:
        flags.append(b"LT")
    return tuple(flags)


class SortedSet:
    """A Redis-backed sorted set safe for multiprocess consumption.

    Items are popped lowest score first; adding an item that is already in
    the set does not create a second copy.

    :param redis_client: a redis-py ``Redis`` (RESP2 or RESP3, any
        ``decode_responses``), or any object with its interface.
    :param name: the key of the sorted set.
    :param scorer: ``scorer(item) -> number``, used when no score is given.
        Default: 0 for every item (:class:`TimeSortedSet`: the time of add).
    :param serializer: an object with ``dumps``/``loads`` (see
        :mod:`redset.serializers`). Default: items go in as redis-py would send
        them (str, bytes, int, float) and come back as ``str``.
    :param lock_timeout: timeout of :attr:`lock` (see :class:`~redset.locks.Lock`).
    :param lock_expires: expiry of :attr:`lock`.
    :param duplicates: what adding a member that is already present does, for
        every add of this set: ``"update"`` (take the new score), ``"keep"``
        (keep the first score, ``ZADD NX``), ``"max"``/``"min"`` (keep the
        higher/lower score, ``ZADD GT``/``LT``). Default ``None``: ``add``
        updates (as in 0.5.1) and ``add_many`` keeps. Flags passed to a call
        win over the policy.
    :param on_decode_error: what ``pop``/``take``/``drain`` do with a member
        the serializer cannot load: ``"skip"`` (log it and go on, the 0.5.1
        default) or ``"raise"`` (:class:`~redset.exceptions.DeserializationError`
        carrying the items that did load and the raw ones that did not).
    :param dead_letter_key: a sorted set where members that fail to load are
        moved with their raw bytes (scored by the time of failure) before
        being skipped or raised, so nothing is lost silently.
    :param chunk_size: items per ``ZADD`` in :meth:`add_many`.
    :param max_deliveries: with leases, how many times an item is delivered
        before an expiry or nack moves it to the dead-letter set (default:
        unlimited).
    :param leased: this set is consumed with leases: adds skip items that
        are in flight (so an item being worked on is not queued twice), and
        adds wake consumers blocked in ``take(..., lease=..., timeout=...)``.
    """

    _default_scorer: Callable[[Any], float] = staticmethod(_default_scorer)

    def __init__(
        self,
        redis_client: Any,
        name: str,
        scorer: Optional[Callable[[Any], float]] = None,
        serializer: Any = None,
        lock_timeout: Optional[float] = None,
        lock_expires: Optional[float] = None,
        *,
        duplicates: Optional[str] = None,
        on_decode_error: str = "skip",
        dead_letter_key: Optional[str] = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_deliveries: Optional[int] = None,
        leased: bool = False,
    ) -> None:
        if duplicates is not None and duplicates not in _DUPLICATE_POLICIES:
            raise ValueError(
                "duplicates must be one of %s, not %r" % (", ".join(_DUPLICATE_POLICIES), duplicates)
            )
        if on_decode_error not in _DECODE_ERROR_POLICIES:
            raise ValueError("on_decode_error must be 'skip' or 'raise', not %r" % (on_decode_error,))
        require_sync_client(redis_client, type(self).__name__)
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1, got %d" % chunk_size)
        self._name = name
        self._key = name.encode("utf-8") if isinstance(name, str) else bytes(name)
        self._wire_impl: ModuleType = _wire.impl
        self._redis = redis_client
        self._transport: Optional[Transport] = None
        self.scorer = scorer or self._default_scorer
        self.serializer = serializer
        self.duplicates = duplicates
        self.on_decode_error = on_decode_error
        self.dead_letter_key = dead_letter_key
        self.chunk_size = chunk_size
        if max_deliveries is not None and int(max_deliveries) < 1:
            raise ValueError("max_deliveries must be >= 1, got %r" % (max_deliveries,))
        self.max_deliveries = None if max_deliveries is None else int(max_deliveries)
        self.leased = bool(leased)
        self._lease_keys = lease_keys(name if isinstance(name, str) else self._key.decode("utf-8", "replace"))
        base = self._lease_keys[1].rsplit(":", 1)[0]
        self._wake_key = base + ":wake"
        self._waiters_key = base + ":waiters"
        self.lock = Lock(self._redis, "%s__lock" % (name,), expires=lock_expires, timeout=lock_timeout)

    # -- configuration ---------------------------------------------------------
    @property
    def name(self) -> str:
        """The key of this set in Redis."""
        return self._name

    @property
    def redis(self) -> Any:
        """The client this set talks through."""
        return self._redis

    @redis.setter
    def redis(self, client: Any) -> None:
        require_sync_client(client, type(self).__name__)
        self._redis = client
        self._transport = None
        self._set_codec()

    @property
    def serializer(self) -> Any:
        """The serializer (assignable; the codec follows)."""
        return self._serializer

    @serializer.setter
    def serializer(self, serializer: Any) -> None:
        self._serializer = serializer
        self._set_codec()

    @property
    def _wire(self) -> ModuleType:
        """The codec module (compiled or pure) this set uses."""
        return self._wire_impl

    @_wire.setter
    def _wire(self, module: ModuleType) -> None:
        self._wire_impl = module
        self._transport = None

    @property
    def _io(self) -> Transport:
        if self._transport is None:
            self._transport = make_transport(self._redis, self._wire_impl)
        return self._transport

    def _set_codec(self) -> None:
        serializer = getattr(self, "_serializer", None)
        dumps = getattr(serializer, "dumps", None)
        loads = getattr(serializer, "loads", None)
        if serializer is None or (dumps is None and loads is None):
            self._codec, self._dumps, self._loads = CODEC_DEFAULT, None, None
            return
        if dumps is not None and loads is not None:
            codec, dumps, loads = codec_of(serializer)
        else:
            codec = CODEC_CUSTOM
        if codec == CODEC_CUSTOM:
            if dumps is None:
                dumps = _identity
            if loads is None:
                loads = _utf8
            elif not getattr(serializer, "loads_bytes", False):
                # 0.5.1 handed loads() the member decoded to str (its
                # "str_from_redis"); a member that is not UTF-8 then fails to
                # load and goes through the decode-error policy.
                user_loads = loads
                loads = lambda raw: user_loads(raw.decode("utf-8"))  # noqa: E731
        self._codec, self._dumps, self._loads = codec, dumps, loads

    def _flags(self, nx: Optional[bool], xx: bool, gt: bool, lt: bool, default: str) -> Tuple[bytes, ...]:
        if nx is None and not (xx or gt or lt):
            nx, xx, gt, lt = _DUPLICATE_POLICIES[self.duplicates or default]
        return _zadd_flags(bool(nx), xx, gt, lt)

    # -- encoding helpers --------------------------------------------------------
    def _dump(self, item: Any) -> bytes:
        return self._wire_impl.encode_member(self._codec, self._dumps, item)

    def _load(self, raw: Any) -> Any:
        if type(raw) is str:
            raw = raw.encode("utf-8")
        return self._wire_impl.decode_member(self._codec, self._loads, raw)

    def _decode_popped(self, reply: Any) -> List[Any]:
        failures: List[Tuple[bytes, BaseException]] = []
        items = self._wire_impl.decode_items(reply, self._codec, self._loads, failures, True)
        if failures:
            self._handle_failures(items, failures)
        return items

    def _handle_failures(self, items: List[Any], failures: List[Tuple[bytes, BaseException]]) -> None:
        if self.dead_letter_key is not None:
            now = time.time()
            args: List[Any] = ["ZADD", self.dead_letter_key]
            for raw, _ in failures:
                args.extend((now, raw))
            self._io.execute(args)
        where = " (moved to %r)" % self.dead_letter_key if self.dead_letter_key else ""
        for raw, exc in failures:
            log.error("Could not deserialize %r popped from %s%s: %s: %s",
                      raw[:200], self.name, where, type(exc).__name__, exc)
        if self.on_decode_error == "raise":
            raise DeserializationError(
                "%d item(s) popped from %r could not be deserialized%s" % (len(failures), self.name, where),
                items, failures,
            ) from failures[0][1]

    # -- 0.5.1 API -----------------------------------------------------------------
    def __repr__(self) -> str:
        return "<%s name='%s', length=%s>" % (type(self).__name__, self.name, len(self))

    __str__ = __repr__

    def __len__(self) -> int:
        """The number of items in the set (ZCARD)."""
        return int(self._io.execute(("ZCARD", self._key)))

    def __contains__(self, item: Any) -> bool:
        return self.score(item) is not None

    def add(self, item: Any, score: Any = None, *, nx: Optional[bool] = None, xx: bool = False,
            gt: bool = False, lt: bool = False) -> Any:
        """Add ``item``; if it is already present, update its score.

        :param item: the item (serialized by the set's serializer).
        :param score: its score; default ``scorer(item)``. An explicit 0 is
            kept (0.5.1 replaced it with the scorer's value).
        :param nx: only add new items, never change a score (``ZADD NX``).
        :param xx: only change scores of items already present.
        :param gt: only change a score if the new one is greater.
        :param lt: only change a score if the new one is lower.
        :returns: the score the item was added with.
        :raises TypeError: a score that is not a real number, or an item the
            serializer cannot encode.
        :raises ValueError: a NaN score, or nx combined with xx/gt/lt.
        """
        flags = self._flags(nx, xx, gt, lt, "update")
        if score is None:
            score = self.scorer(item)
        wire = self._wire_impl
        encoded_score = wire.format_score(score)
        member = wire.encode_member(self._codec, self._dumps, item)
        if self.leased:
            self._add_unless_inflight(flags, [encoded_score, member])
            self._wake(1)
        else:
            # The add and the question "does any consumer wait?" in one round
            # trip; the wake list is written only when one does.
            replies = self._io.execute_many(
                (("ZADD", self._key) + flags + (encoded_score, member), self._waiting_query()))
            if int(replies[1]):
                self._push_wake(int(replies[1]), 1)
        return score

    def add_many(self, items: Iterable[Any], scores: Optional[Iterable[Any]] = None, *,
                 nx: Optional[bool] = None, xx: bool = False, gt: bool = False, lt: bool = False) -> int:
        """Add many items in pipelined ``ZADD`` commands of ``chunk_size`` items.

        Any iterable works and is consumed lazily: memory is bounded by the
        chunk size, not by the input. Each chunk is encoded whole before it
        is sent, so an item or score that cannot be encoded raises before
        anything of its chunk reaches the server; its ``index`` and ``sent``
        attributes say which item it was and how many earlier items were
        already added (0 when the input fits in one chunk).

        :param items: the items.
        :param scores: numbers parallel to ``items``; default ``scorer(item)``.
        :param nx: keep the score of items already present (the default
            unless the set's ``duplicates`` policy says otherwise).
        :param xx: only change scores of items already present.
        :param gt: only change a score if the new one is greater.
        :param lt: only change a score if the new one is lower.
        :returns: the number of new members (after a reconnect it can miss
            members whose first attempt applied but whose reply was lost).
        :raises TypeError: a bad item or score (``InvalidItemError``/``InvalidScoreError``).
        :raises ValueError: a NaN score, conflicting flags, or ``scores`` of
            another length than ``items``.
        """
        flags = self._flags(nx, xx, gt, lt, "keep")
        if scores is not None and hasattr(items, "__len__") and hasattr(scores, "__len__"):
            if len(items) != len(scores):  # type: ignore[arg-type]
                raise ValueError("got %d items but %d scores" % (len(items), len(scores)))  # type: ignore[arg-type]
        if self.leased:
            added = self._add_many_unless_inflight(flags, self._chunks(items, scores))
        else:
            added = self._io.zadd_stream(self._key, flags, self._chunks(items, scores), self._codec, self._dumps)
        if added or flags != (b"NX",):
            # New members, or scores that may have moved earlier: tell waiters.
            self._wake(added or 1)
        return added

    # -- waking blocked consumers ------------------------------------------------
    #
    # Consumers that cannot block on the set itself (leased takes, and every
    # ScheduledSet wait) register in ``{name}:waiters`` (token -> end of the
    # wait) and block on the list ``{name}:wake``. A producer asks, after its
    # add, how many live waiters there are (a read) and pushes that many
    # tokens only if there are any, so an add costs no write when nobody
    # waits. A waiter registers before it looks for work one last time, so an
    # add either comes before that look or sees the registration.

    def _waiting_query(self) -> Tuple[Any, ...]:
        return ("ZCOUNT", self._waiters_key, self._wire_impl.format_score(time.time()), "+inf")

    def _wake(self, count: int) -> None:
        """Wake up to ``count`` blocked consumers, if any wait (best effort)."""
        try:
            waiting = int(self._io.execute(self._waiting_query()))
        except (redis.exceptions.ResponseError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError) as exc:
            log.warning("items were added to %s, but waking blocked consumers failed: %s", self.name, exc)
            return
        if waiting:
            self._push_wake(waiting, count)

    def _push_wake(self, waiting: int, count: int) -> None:
        """Leave one token per waiter to wake (at most ``waiting``) on the wake list.

        Best effort, after the add succeeded: the add must not be reported as
        failed because its wake-up was refused (a server at maxmemory takes
        the ZADD that crosses the limit and refuses the RPUSH after it). A
        consumer that misses a wake-up still wakes at its next due time,
        lease expiry or wait slice. Tokens left by waiters that gave up
        expire with the list.
        """
        tokens = max(1, min(waiting, count))
        try:
            self._io.execute_many((
                ("RPUSH", self._wake_key) + (1,) * tokens,
                ("LTRIM", self._wake_key, -waiting, -1),
                ("PEXPIRE", self._wake_key, _WAKE_TOKEN_TTL_MS),
            ))
        except (redis.exceptions.ResponseError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError) as exc:
            log.warning("items were added to %s, but waking blocked consumers failed: %s", self.name, exc)

    def _add_unless_inflight(self, flags: Tuple[bytes, ...], pairs: List[Any]) -> int:
        keys = (self._key, self._lease_keys[1])
        return int(self._io.evalsha(scripts.ADD_UNLESS_INFLIGHT, keys, [b" ".join(flags)] + pairs))

    def _add_many_unless_inflight(self, flags: Tuple[bytes, ...], chunks: Iterable[Chunk]) -> int:
        wire = self._wire_impl
        added = 0
        sent = 0
        for items, scores, offset in chunks:
            pairs: List[Any] = []
            for i in range(len(items)):
                pairs.append(wire.format_score(scores[i], offset + i, sent))
                pairs.append(wire.encode_member(self._codec, self._dumps, items[i], offset + i, sent))
            added += self._add_unless_inflight(flags, pairs)
            sent += len(items)
        return added

    def _chunks(self, items: Iterable[Any], scores: Optional[Iterable[Any]]) -> Iterator[Chunk]:
        size = self.chunk_size
        offset = 0
        if scores is None:
            scorer = self.scorer
            it = iter(items)
            while True:
                chunk = list(itertools.islice(it, size))
                if not chunk:
                    return
                yield chunk, [scorer(item) for item in chunk], offset
                offset += len(chunk)
        if isinstance(items, (list, tuple)) and isinstance(scores, (list, tuple)):
            for start in range(0, len(items), size):
                yield items[start:start + size], scores[start:start + size], start
            return
        missing = object()
        pairs = itertools.zip_longest(items, scores, fillvalue=missing)
        while True:
            chunk_pairs = list(itertools.islice(pairs, size))
            if not chunk_pairs:
                return
            chunk_items = [p[0] for p in chunk_pairs]
            chunk_scores = [p[1] for p in chunk_pairs]
            if missing in chunk_items or missing in chunk_scores:
                raise ValueError("items and scores differ in length (after %d items)"
                                 % (offset + min(chunk_items.index(missing) if missing in chunk_items
                                                 else len(chunk_items),
                                                 chunk_scores.index(missing) if missing in chunk_scores
                                                 else len(chunk_scores))))
            yield chunk_items, chunk_scores, offset
            offset += len(chunk_items)

    def pop(self, timeout: Optional[float] = None, lease: Optional[float] = None) -> Any:
        """Atomically remove and return the lowest-scored item.

        :param timeout: seconds to wait for an item when there is none
            (default: do not wait).
        :param lease: lease the item for this many seconds instead of
            removing it: returns a :class:`~redset.leases.Lease` to ``ack``.
        :raises KeyError: if there is no item (within ``timeout``). Items that
            fail to load are skipped (or raised, see ``on_decode_error``) and
            the pop goes on to the next one.
        :raises PopOutcomeUnknown: the connection failed after the pop was
            sent; it is not retried (see docs/delivery.md).
        """
        items = self.take(1, timeout=timeout, lease=lease)
        if not items:
            raise KeyError("%s is empty" % self.name)
        return items[0]

    def take(self, num: Any, timeout: Optional[float] = None, lease: Optional[float] = None) -> List[Any]:
        """Atomically remove and return up to ``num`` lowest-scored items, lowest first.

        :param num: how many, an ``int``; below 1 returns ``[]`` without
            asking the server (as in 0.5.1).
        :param timeout: seconds to wait when no item is available (default:
            return ``[]`` at once). Sorted and time-sorted sets block in
            ``BZPOPMIN``; a ScheduledSet and leased takes sleep until the
            next item is due, a lease expires, or a producer signals.
        :param lease: lease the items for this many seconds (at-least-once):
            returns :class:`~redset.leases.Lease` handles to ``ack``/``nack``.
        :raises TypeError: ``num`` is not an integer (str, float and bool are refused).
        :raises PopOutcomeUnknown: the connection failed after the pop was sent.
        """
        num = check_count(num, "num")
        if num < 1:
            return []
        if lease is not None and not lease > 0:
            raise ValueError("lease must be a positive number of seconds, got %r" % (lease,))
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0, got %r" % (timeout,))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            items, skipped = self._lease_take(num, lease) if lease is not None else self._pop_items(num)
            while not items and skipped:
                # Everything popped failed to load and was skipped: the set
                # may still hold items, so "empty" would be a lie. Pop again.
                items, skipped = self._lease_take(num, lease) if lease is not None else self._pop_items(num)
            if items or deadline is None:
                return items
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return items
            items = self._block(num, remaining, lease)
            if items:
                return items

    def consumer(self, lease: float = 30.0, batch_size: int = 10, timeout: Optional[float] = None,
                 handle_signals: bool = True) -> Consumer:
        """A leased consumer loop: ``with s.consumer(lease=30) as items: for item in items: ...``.

        See :class:`~redset.leases.Consumer`.
        """
        return Consumer(self, lease=lease, batch_size=batch_size, timeout=timeout,
                        handle_signals=handle_signals)

    # -- leases ----------------------------------------------------------------------
    def _lease_take(self, num: int, lease: float) -> Tuple[List[Any], int]:
        """Lease up to ``num`` items; return them and how many failed to load."""
        now = time.time()
        deadline = now + lease
        token = new_token()
        wire = self._wire_impl
        reply = self._io.evalsha(
            scripts.LEASE_TAKE, self._lease_keys,
            (wire.format_score(now), repr(float(deadline)), num, self.max_deliveries or 0, token,
             "1" if self._due_only else "0"),
            pop=True,
        )
        out: List[Any] = []
        failures: List[Tuple[bytes, BaseException]] = []
        for i in range(0, len(reply), 3):
            member = reply[i]
            if type(member) is str:
                member = member.encode("utf-8")
            try:
                item = wire.decode_member(self._codec, self._loads, member)
            except (RuntimeError, MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:
                failures.append((member, exc))
                # Keep nothing in flight that no one can ack.
                self._io.evalsha(scripts.LEASE_SETTLE, self._lease_keys, (member, token, "ack", "", 0))
                continue
            out.append(Lease(self, member, item, float(reply[i + 1]), int(reply[i + 2]), token, deadline))
        if failures:
            self._handle_failures(out, failures)
        return out, len(failures)

    def ack_many(self, leases: Iterable[Lease]) -> int:
        """Ack many leases of this set in one round trip per 1,000.

        Leases that are still held are acked even when others are stale.

        :returns: the number acked.
        :raises StaleLeaseError: after acking the others, if some leases were
            no longer held; its ``stale`` attribute lists them.
        :raises OutcomeUnknown: the connection failed after a call was sent.
        """
        todo = [x for x in leases if not x.settled]
        acked = 0
        stale: List[Lease] = []
        for start in range(0, len(todo), 1000):
            chunk = todo[start:start + 1000]
            args: List[Any] = []
            for lease in chunk:
                if lease._set is not self:
                    raise ValueError("lease of %r given to ack_many of %r" % (lease._set.name, self.name))
                args.extend((lease.member, lease.token))
            results = self._io.evalsha(scripts.LEASE_ACK_MANY, self._lease_keys, args, once=True)
            for lease, ok in zip(chunk, results):
                if int(ok):
                    lease.settled = True
                    acked += 1
                else:
                    stale.append(lease)
        if stale:
            err = StaleLeaseError(
                "%d of %d leases on %r were no longer held (expired and reclaimed, or settled); "
                "the other %d were acked" % (len(stale), len(todo), self.name, acked), self.name)
            err.stale = stale  # type: ignore[attr-defined]
            raise err
        return acked

    def in_flight(self) -> int:
        """The number of leased items not yet acked, nacked or reclaimed."""
        return int(self._io.execute(("ZCARD", self._lease_keys[1])))

    def dead_letters(self, num: int = 100) -> List[Any]:
        """Up to ``num`` items in the dead-letter set, without removing them."""
        reply = self._io.execute(("ZRANGE", self._lease_keys[4], 0, int(num) - 1))
        return [self._load(raw) for raw in reply]

    def dead_count(self) -> int:
        """The number of items in the dead-letter set."""
        return int(self._io.execute(("ZCARD", self._lease_keys[4])))

    def requeue_dead(self, num: int = 1000) -> int:
        """Move up to ``num`` dead letters back into the set at their original scores."""
        moved = int(self._io.evalsha(scripts.REQUEUE_DEAD, self._lease_keys, (int(num),)))
        if moved:
            self._wake(moved)
        return moved

    # -- blocking ---------------------------------------------------------------------
    _due_only = False

    def _slice(self, remaining: float) -> float:
        """A wait that stays under the client's read timeout."""
        limit = self._io.socket_timeout()
        if limit:
            # The server may answer a blocking command up to one cron tick
            # after its timeout.
            remaining = min(remaining, max(0.01, limit * 0.8 - _SERVER_TICK))
        return remaining

    def _block(self, num: int, remaining: float, lease: Optional[float]) -> List[Any]:
        if lease is not None:
            self._sleep_until_work(remaining, include_inflight=True)
            return []
        wait = self._slice(remaining)
        reply = self._io.execute(("BZPOPMIN", self._key, _timeout_arg(wait)), pop=True)
        if not reply:
            return []
        # [key, member, score] -> the ZPOPMIN shape, then fill the batch.
        first = [reply[1], reply[2]]
        if num > 1:
            more = self._io.execute(("ZPOPMIN", self._key, num - 1), pop=True)
            first.extend(_flatten_pairs(more))
        return self._decode_popped(first)

    def _sleep_until_work(self, remaining: float, include_inflight: bool) -> None:
        """Block on the wake list until work may be available.

        Work is a new item (a producer pushes the wake list), the next item
        becoming due (ScheduledSet), or the next lease expiring.
        """
        now = time.time()
        wait = remaining
        due_limited = False
        token = new_token()
        wire = self._wire_impl
        # Register as a waiter first, then look for work: an add that this
        # look misses sees the registration and pushes a wake token.
        commands: List[Sequence[Any]] = [
            ("ZREMRANGEBYSCORE", self._waiters_key, "-inf", wire.format_score(now)),
            ("ZADD", self._waiters_key, repr(now + self._slice(remaining) + _SERVER_TICK), token),
            ("ZRANGE", self._key, 0, 0, "WITHSCORES"),
        ]
        if include_inflight:
            commands.append(("ZRANGE", self._lease_keys[1], 0, 0, "WITHSCORES"))
        try:
            replies = self._io.execute_many(commands)
            for i, reply in enumerate(replies[2:]):
                pairs = wire.decode_scored(reply)
                if not pairs:
                    continue
                if i == 0 and not self._due_only:
                    return  # an item is waiting: no need to sleep
                if pairs[0][1] - now < wait:
                    wait = max(0.0, pairs[0][1] - now)
                    due_limited = True
            if wait <= 0.0005:
                return
            until = time.monotonic() + wait
            if due_limited:
                # Servers time blocking commands out on their cron tick (100
                # ms at the default hz), too coarse to wake on a due time:
                # block on the server until shortly before it, then sleep the
                # rest here.
                server_wait = self._slice(wait - _SERVER_TICK)
                if server_wait > 0.01:
                    if self._wait_for_signal(server_wait):
                        return  # a producer signalled
                rest = until - time.monotonic()
                if rest > 0 and rest <= _SERVER_TICK + 0.05:
                    time.sleep(rest)
                return
            self._wait_for_signal(self._slice(wait))
        finally:
            self._unregister(token)

    def _unregister(self, token: str) -> None:
        """Leave the waiters (best effort: an entry left behind expires)."""
        try:
            self._io.execute(("ZREM", self._waiters_key, token))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.debug("could not unregister a waiter of %s: %s", self.name, exc)

    def _wait_for_signal(self, seconds: float) -> bool:
        """Block on the wake list; True if a producer signalled.

        Only a wake token can be lost here, never an item, so a read timeout
        or a dropped connection just ends the wait: the caller looks for
        work again.
        """
        try:
            return bool(self._io.execute(("BLPOP", self._wake_key, _timeout_arg(seconds))))
        except (redis.exceptions.TimeoutError, redis.exceptions.ConnectionError) as exc:
            log.debug("wait for work on %s ended early: %s", self.name, exc)
            return False

    def drain(self, batch_size: int = 1000) -> Iterator[List[Any]]:
        """Pop batches until the set is empty, keeping the next pop in flight.

        While the caller works on one batch, the pop of the next is already
        on its way, so a consumer is not held up by a round trip per batch.
        The price is an at-most-once window: if the process dies, the one
        batch popped in flight but not yet handed over is lost. Stopping the
        iteration early (``break``, ``close()``) puts that batch back with
        its original scores. The next pop is sent as soon as the header of
        the current reply shows a full batch, so that the server works while
        the client receives and decodes; a connection lost in that moment
        leaves the outcome of both pops unknown
        (:class:`~redset.exceptions.PopOutcomeUnknown`).

        :param batch_size: items per pop.
        :returns: an iterator of non-empty lists.
        """
        batch_size = check_count(batch_size, "batch_size")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1, got %d" % batch_size)
        io = self._io
        self._prepare_pop()
        stream = io.pop_batches(
            lambda: self._pop_request(batch_size), batch_size, self._codec, self._loads, self._restore,
        )
        try:
            for items, failures in stream:
                if failures:
                    self._handle_failures(items, failures)
                if items:
                    yield items
        finally:
            stream.close()

    def _restore(self, pairs: List[Tuple[bytes, float]]) -> None:
        """Put back ``(member, score)`` pairs popped but never handed over."""
        if pairs:
            args: List[Any] = ["ZADD", self._key, "NX"]
            for member, score in pairs:
                args.extend((score, member))
            self._io.execute(args)

    def clear(self, *, keep_dead_letters: bool = False) -> int:
        """Delete the set and every key it owns; truthy if the set existed.

        Besides the set itself this removes its leases in flight
        (``{name}:inflight``, ``:leases``, ``:deliveries``), its wake-up keys
        (``:wake``, ``:waiters``) and its dead letters (``:dead``), unless
        ``keep_dead_letters``. Not removed: the key given as
        ``dead_letter_key`` (you named it; it may be shared) and the lock key
        (a holder may still be in its block; it expires).
        """
        main, inflight, leases, counts, dead = self._lease_keys
        others: List[Any] = [inflight, leases, counts, self._wake_key, self._waiters_key]
        if not keep_dead_letters:
            others.append(dead)
        replies = self._io.execute_many((("DEL", self._key), ["DEL"] + others))
        return int(replies[0])

    def discard(self, item: Any) -> bool:
        """Remove ``item``; True if it was in the set."""
        return bool(self._io.execute(("ZREM", self._key, self._dump(item))))

    def peek(self, position: int = 0) -> Any:
        """Return the item at rank ``position`` without removing it.

        :raises KeyError: if there is no item at that position.
        """
        reply = self._peek_raw(int(position), False)
        if not reply:
            raise KeyError("%s has no item at position %d" % (self.name, position))
        return self._load(reply[0])

    def score(self, item: Any) -> Optional[float]:
        """The score of ``item``, or None if it is not in the set."""
        reply = self._io.execute(("ZSCORE", self._key, self._dump(item)))
        return None if reply is None else float(reply)

    def peek_score(self) -> Optional[float]:
        """The score of the next item to pop, or None if there is none.

        On a TimeSortedSet this is the add time of the oldest item, so
        ``time.time() - s.peek_score()`` is the lag of the consumers.
        """
        reply = self._peek_raw(0, True)
        pairs = self._wire_impl.decode_scored(reply)
        return pairs[0][1] if pairs else None

    # -- what subclasses change ------------------------------------------------------
    def _prepare_pop(self) -> None:
        """Hook run before a streamed pop (ScheduledSet loads its script)."""

    def _pop_request(self, num: int) -> Sequence[Any]:
        return ("ZPOPMIN", self._key, num)

    def _pop_items(self, num: int) -> Tuple[List[Any], int]:
        """Pop up to ``num`` items; return them and how many failed to load."""
        failures: List[Tuple[bytes, BaseException]] = []
        items = self._io.pop_items(self._pop_request(num), self._codec, self._loads, failures)
        if failures:
            self._handle_failures(items, failures)
        return items, len(failures)

    def _peek_raw(self, position: int, with_score: bool) -> Any:
        args: Tuple[Any, ...] = ("ZRANGE", self._key, position, position)
        if with_score:
            args += ("WITHSCORES",)
        return self._io.execute(args)



#: Seconds: how late a server may time out a blocking command (one cron tick
#: at hz 10, plus margin).
_SERVER_TICK = 0.12
#: Milliseconds a wake token outlives the last push (tokens of waiters that
#: gave up must not pile up).
_WAKE_TOKEN_TTL_MS = 10000


class TimeSortedSet(SortedSet):
    """A FIFO-by-default sorted set: the default score is the time of add.

    ``time.time() - s.peek_score()`` is how long the oldest item has waited:
    the number to send to monitoring.
    """

    _default_scorer = staticmethod(_time_scorer)


class ScheduledSet(TimeSortedSet):
    """A time-sorted set whose items become poppable at their score (a UNIX time).

    ``pop``, ``take``, ``drain``, ``peek`` and ``peek_score`` only see items
    whose score is ``<= time.time()``; ``len`` counts every item and
    :meth:`available` the due ones. Pops run one Lua script (range by score,
    remove, return), so they are atomic without a lock. Adds push a wake
    signal so that consumers blocked in ``pop(timeout=...)`` see an item that
    is due earlier than the one they wait for.
    """

    _due_only = True

    def _block(self, num: int, remaining: float, lease: Optional[float]) -> List[Any]:
        self._sleep_until_work(remaining, include_inflight=lease is not None)
        return []

    def _prepare_pop(self) -> None:
        self._io.execute(("SCRIPT", "LOAD", scripts.POP_DUE))

    def _pop_request(self, num: int) -> Sequence[Any]:
        return ("EVALSHA", _POP_DUE_SHA, 1, self._key, self._wire_impl.format_score(time.time()), num)

    def _pop_items(self, num: int) -> Tuple[List[Any], int]:
        """Pop up to ``num`` items; return them and how many failed to load."""
        failures: List[Tuple[bytes, BaseException]] = []
        items = self._io.pop_items(self._pop_request(num), self._codec, self._loads, failures,
                                   script=scripts.POP_DUE)
        if failures:
            self._handle_failures(items, failures)
        return items, len(failures)

    def _peek_raw(self, position: int, with_score: bool) -> Any:
        args: Tuple[Any, ...] = ("ZRANGEBYSCORE", self._key, "-inf", self._wire_impl.format_score(time.time()))
        if with_score:
            args += ("WITHSCORES",)
        return self._io.execute(args + ("LIMIT", position, 1))

    def available(self) -> int:
        """The number of items that are due now."""
        return int(self._io.execute(("ZCOUNT", self._key, "-inf", self._wire_impl.format_score(time.time()))))


_POP_DUE_SHA = scripts.sha1(scripts.POP_DUE)


def _timeout_arg(seconds: float) -> bytes:
    """A blocking-command timeout: never 0, which would mean forever."""
    return b"%.3f" % max(0.001, seconds)


def _flatten_pairs(reply: Any) -> List[Any]:
    if reply and type(reply[0]) is list:
        return [x for pair in reply for x in pair]
    return list(reply or [])


def _identity(item: Any) -> Any:
    return item


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8")
