"""Redis-backed sorted sets for sharing work between processes.

``SortedSet`` pops the lowest score first; ``TimeSortedSet`` scores by add
time (FIFO); ``ScheduledSet`` only hands out items whose time has come.
All three deduplicate: a member is stored once however often it is added.

These classes are thin: each method runs a plan of :mod:`redset._core` on
the sync driver of :mod:`redset._io.sync`. :mod:`redset.asyncio` runs the
same plans on the asyncio driver.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional

from redset._checks import check_count, require_sync_client
from redset._core import adds, leasing, pops, reads
from redset._core.config import SetConfig, TimeScored
from redset._core.drain import DRAIN_WINDOW
from redset._core.steps import Plan
from redset._io.sync import make_driver
from redset._io.shards import ShardDriver
from redset.exceptions import StaleLeaseError
from redset.stats import InFlightItem, SetStats
from redset.leases import Consumer, Lease
from redset.locks import Lock

__all__ = ("SortedSet", "TimeSortedSet", "ScheduledSet")

def check_take(num: Any, timeout: Optional[float], lease: Optional[float]) -> int:
    """Check take()'s arguments before anything is sent; return the count."""
    count = check_count(num, "num")
    if lease is not None and not lease > 0:
        raise ValueError("lease must be a positive number of seconds, got %r" % (lease,))
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be >= 0, got %r" % (timeout,))
    return count


def check_batch_size(batch_size: Any) -> int:
    size = check_count(batch_size, "batch_size")
    if size < 1:
        raise ValueError("batch_size must be >= 1, got %d" % size)
    return size


def check_window(window: Any) -> int:
    size = check_count(window, "window")
    if size < 1:
        raise ValueError("window must be >= 1, got %d" % size)
    return size


class SortedSet(SetConfig):
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
    :param shards: spread the set over this many shards, each under its own
        hash tag (``{name:0}``, ...), so that a cluster spreads it over its
        primaries (default 1: one key). A member always goes to the same
        shard, so deduplication holds; takes merge the shards by score (the
        lowest item is always in the next take). Every client of a set must
        use the same number. See docs/cluster.md, "Sharded sets".
    """

    _check_client = staticmethod(require_sync_client)
    _driver_factory = staticmethod(make_driver)
    _lock_class = Lock
    _shard_driver_factory = ShardDriver

    def _run(self, plan: Plan[Any]) -> Any:
        return self._io.run(plan)

    @property
    def _make_lease(self) -> Any:
        """The class of this set's lease handles (a take builds them)."""
        return Lease

    # -- 0.5.1 API -----------------------------------------------------------------
    def __repr__(self) -> str:
        return "<%s name='%s', length=%s>" % (type(self).__name__, self.name, len(self))

    __str__ = __repr__

    def __len__(self) -> int:
        """The number of items in the set (ZCARD)."""
        return self.count()

    def count(self) -> int:
        """The number of items in the set (``len(s)``; ZCARD)."""
        return int(self._run(reads.count(self)))

    def __contains__(self, item: Any) -> bool:
        return self.contains(item)

    def contains(self, item: Any) -> bool:
        """True if ``item`` is in the set (``item in s``)."""
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
        return self._run(adds.add(self, item, score, self._flags(nx, xx, gt, lt, "update")))

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
        return int(self._run(adds.add_many(self, items, scores, flags)))

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
        num = check_take(num, timeout, lease)
        if num < 1:
            return []
        read_timeout = self._io.socket_timeout() if timeout is not None else None
        items = self._run(pops.take(self, num, timeout, lease, read_timeout,
                                    None if lease is None else self._make_lease))
        # A plan's list is the caller's already: copied only if it is not a list.
        return items if type(items) is list else list(items)

    def consumer(self, lease: float = 30.0, batch_size: int = 10, timeout: Optional[float] = None,
                 handle_signals: bool = True, ack_delay: Optional[float] = None) -> Consumer:
        """A leased consumer loop: ``with s.consumer(lease=30) as items: for item in items: ...``.

        ``ack_delay``: the longest a finished item waits for its ack, which
        goes with the others of its batch (default 0.1 s, at most ``lease /
        3``; 0 acks each item at once). See :class:`~redset.leases.Consumer`.
        """
        return Consumer(self, lease=lease, batch_size=batch_size, timeout=timeout,
                        handle_signals=handle_signals, ack_delay=ack_delay)

    # -- leases ----------------------------------------------------------------------
    def ack_many(self, leases: Iterable[Lease]) -> int:
        """Ack many leases of this set in one round trip per 1,000.

        Leases that are still held are acked even when others are stale.

        :returns: the number acked.
        :raises StaleLeaseError: after acking the others, if some leases were
            no longer held; its ``stale`` attribute lists them.
        :raises OutcomeUnknown: the connection failed after a call was sent.
        """
        todo = leasing.unsettled(self, leases)
        acked, stale = self._run(leasing.ack_many(self, todo))
        if stale:
            err = StaleLeaseError(
                "%d of %d leases on %r were no longer held (expired and reclaimed, or settled); "
                "the other %d were acked" % (len(stale), len(todo), self.name, acked), self.name)
            err.stale = stale  # type: ignore[attr-defined]
            raise err
        return int(acked)

    def in_flight(self) -> int:
        """The number of leased items not yet acked, nacked or reclaimed."""
        return int(self._run(reads.in_flight(self)))

    def stats(self) -> "SetStats":
        """The set's figures in one round trip: length, due items, age of the
        oldest due item, next due time, in flight, oldest lease, dead letters
        (see :class:`redset.stats.SetStats` for what each means per class)."""
        return self._run(reads.stats(self))  # type: ignore[no-any-return]

    def in_flight_items(self, num: int = 100) -> List["InFlightItem"]:
        """Up to ``num`` leased items (item, score, deliveries, deadline, when
        taken), the earliest deadline first, without touching them."""
        return list(self._run(reads.in_flight_items(self, int(num))))

    def dead_letters(self, num: int = 100) -> List[Any]:
        """Up to ``num`` items in the dead-letter set, without removing them."""
        return list(self._run(leasing.dead_letters(self, num)))

    def dead_count(self) -> int:
        """The number of items in the dead-letter set."""
        return int(self._run(reads.dead_count(self)))

    def requeue_dead(self, num: int = 1000) -> int:
        """Move up to ``num`` dead letters back into the set at their original scores."""
        return int(self._run(leasing.requeue_dead(self, num)))

    def drain(self, batch_size: int = 1000, *, window: int = DRAIN_WINDOW) -> Iterator[List[Any]]:
        """Pop batches until the set is empty, keeping a window of pops in flight.

        While the caller works on one batch, the pops of the next ones are
        already on their way, so a consumer is not held up by a round trip
        per batch and the server never waits for the client to decode. As
        soon as the header of a reply shows a full batch, pops are sent
        until ``window`` of them are in flight behind it; once a reply comes
        back short no more are sent, and what the pops in flight bring back
        (items added meanwhile) is still delivered.

        The price is an at-most-once window: if the process dies, the
        batches popped but not yet handed over are lost, up to
        ``window + 1`` of them (those in flight and the one being received),
        that is up to ``(window + 1) * batch_size`` items besides the batch
        the caller holds. Stopping the iteration early (``break``,
        ``close()``) reads every pop in flight and puts its items back with
        their original scores. A connection lost meanwhile leaves the
        outcome of every pop in flight unknown
        (:class:`~redset.exceptions.PopOutcomeUnknown`, which says how many).
        A sharded set pops one round per batch, none in flight, and ignores
        ``window``.

        :param batch_size: items per pop.
        :param window: pops kept in flight besides the one being received
            (:data:`redset._core.drain.DRAIN_WINDOW`, 3, by default; 1 is a
            single pop ahead).
        :returns: an iterator of non-empty lists.
        """
        batch_size = check_batch_size(batch_size)
        window = check_window(window)
        return self._io.iterate(pops.drain(self, batch_size, window))  # type: ignore[no-any-return]

    def clear(self, *, keep_dead_letters: bool = False) -> int:
        """Delete the set and every key it owns; truthy if the set existed.

        Besides the set itself this removes its leases in flight
        (``{name}:inflight``, ``:leases``, ``:deliveries``), its wake-up keys
        (``:wake``, ``:waiters``) and its dead letters (``:dead``), unless
        ``keep_dead_letters``. Not removed: the key given as
        ``dead_letter_key`` (you named it; it may be shared) and the lock key
        (a holder may still be in its block; it expires).
        """
        return int(self._run(reads.clear(self, keep_dead_letters)))

    def discard(self, item: Any) -> bool:
        """Remove ``item``; True if it was in the set."""
        return bool(self._run(reads.discard(self, item)))

    def peek(self, position: int = 0) -> Any:
        """Return the item at rank ``position`` without removing it.

        :raises KeyError: if there is no item at that position.
        """
        return self._run(reads.peek(self, int(position)))

    def score(self, item: Any) -> Optional[float]:
        """The score of ``item``, or None if it is not in the set."""
        return self._run(reads.score(self, item))  # type: ignore[no-any-return]

    def peek_score(self) -> Optional[float]:
        """The score of the next item to pop, or None if there is none.

        On a TimeSortedSet this is the add time of the oldest item, so
        ``time.time() - s.peek_score()`` is the lag of the consumers.
        """
        return self._run(reads.peek_score(self))  # type: ignore[no-any-return]


class TimeSortedSet(TimeScored, SortedSet):
    """A FIFO-by-default sorted set: the default score is the time of add.

    ``time.time() - s.peek_score()`` is how long the oldest item has waited:
    the number to send to monitoring.
    """


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

    def available(self) -> int:
        """The number of items that are due now."""
        return int(self._run(reads.available(self)))
