"""redset for asyncio: the same sets, every method a coroutine.

::

    import redis.asyncio
    from redset.asyncio import SortedSet

    jobs = SortedSet(redis.asyncio.Redis(), "jobs")
    await jobs.add_many(tasks)
    async for batch in jobs.drain(1000):
        ...
    async with jobs.consumer(lease=30) as items:
        async for item in items:
            await handle(item)

The constructors take the same arguments as :mod:`redset.sets`; the client
is a ``redis.asyncio.Redis`` (RESP2 or RESP3, any ``decode_responses``).
``len(s)`` and ``item in s`` cannot await, so they are
:meth:`SortedSet.count` and :meth:`SortedSet.contains` here (the sync classes
have both names too). Each method runs the same plan of :mod:`redset._core`
as its sync twin, on the asyncio driver of :mod:`redset._io.aio`.

Cancellation is safe: a connection that a cancelled call leaves with a
reply in flight is closed, never reused, so no later call reads a reply
meant for another. A pop cancelled after it was sent loses nothing: the
popped items are put back (leased takes: they stay leased until their lease
expires, then come back).
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, AsyncIterable, AsyncIterator, Iterable, List, Optional, Union

from redset import _wire
from redset._core import adds, consuming, leasing, locking, pops, reads
from redset._core.config import SetConfig, TimeScored
from redset._core.drain import DRAIN_WINDOW
from redset._core.steps import Plan
from redset._io.aio import make_async_driver
from redset._io.shards import AsyncShardDriver
from redset.exceptions import StaleLeaseError
from redset.stats import InFlightItem, SetStats
from redset.sets import check_batch_size, check_take, check_window

__all__ = ["SortedSet", "TimeSortedSet", "ScheduledSet", "Lock", "Lease", "Consumer"]


def _require_async_client(client: Any, cls_name: str) -> None:
    import inspect

    execute = getattr(client, "execute_command", None)
    if execute is not None and not inspect.iscoroutinefunction(execute):
        raise TypeError(
            "redset.asyncio.%s needs an asyncio client (redis.asyncio.Redis), but %s.%s is "
            "synchronous; use redset.%s for it" % (cls_name, type(client).__module__,
                                                   type(client).__qualname__, cls_name))


class Lock(locking.LockConfig):
    """The asyncio twin of :class:`redset.locks.Lock`: ``async with lock: ...``."""

    def __init__(self, redis: Any, key: str, expires: Optional[float] = None,
                 timeout: Optional[float] = None, poll_interval: Optional[float] = None) -> None:
        super().__init__(redis, key, expires, timeout, poll_interval)
        self._driver: Any = None

    @property
    def _io(self) -> Any:
        if self._driver is None:
            self._driver = make_async_driver(self.redis, _wire.impl, False)
        return self._driver

    async def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout``; :class:`LockTimeout` if not."""
        self.token = await self._io.run(
            locking.acquire(self._io.wire, self.key, self.expires, self.timeout, self.poll_interval))

    async def release(self) -> bool:
        """Release the lock if this holder still owns it."""
        token, self.token = self.token, None
        return bool(await self._io.run(locking.release(self._io.wire, self.key, token)))

    async def locked(self) -> bool:
        """Whether some holder currently holds the lock."""
        return bool(await self._io.run(locking.locked(self._io.wire, self.key)))

    async def __aenter__(self) -> "Lock":
        await self.acquire()
        return self

    async def __aexit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        await self.release()


class SortedSet(SetConfig):
    """An asyncio twin of :class:`redset.sets.SortedSet`: same arguments,
    coroutine methods. See there for every parameter."""

    _check_client = staticmethod(_require_async_client)
    _driver_factory = staticmethod(make_async_driver)
    _lock_class = Lock
    _shard_driver_factory = AsyncShardDriver

    async def _run(self, plan: Plan[Any]) -> Any:
        return await self._io.run(plan)

    @property
    def _make_lease(self) -> Any:
        """The class of this set's lease handles (a take builds them)."""
        return Lease

    def __repr__(self) -> str:
        return "<%s name='%s' (asyncio)>" % (type(self).__name__, self.name)

    async def count(self) -> int:
        """The number of items in the set (ZCARD)."""
        return int(await self._run(reads.count(self)))

    async def contains(self, item: Any) -> bool:
        """True if ``item`` is in the set."""
        return (await self.score(item)) is not None

    async def add(self, item: Any, score: Any = None, *, nx: Optional[bool] = None, xx: bool = False,
                  gt: bool = False, lt: bool = False) -> Any:
        """Add ``item`` (see :meth:`redset.sets.SortedSet.add`); return the score used."""
        return await self._run(adds.add(self, item, score, self._flags(nx, xx, gt, lt, "update")))

    async def add_many(self, items: Union[Iterable[Any], AsyncIterable[Any]],
                       scores: Optional[Iterable[Any]] = None, *, nx: Optional[bool] = None,
                       xx: bool = False, gt: bool = False, lt: bool = False) -> int:
        """Add many items in pipelined ``ZADD`` chunks; return the number of new members.

        ``items`` may be an iterable or an async iterable. A sync iterable is
        streamed with several chunks in flight; an async one is read a chunk
        at a time, each chunk sent when it is full.
        See :meth:`redset.sets.SortedSet.add_many` for errors and flags.
        """
        flags = self._flags(nx, xx, gt, lt, "keep")
        if not hasattr(items, "__aiter__"):
            if scores is not None and hasattr(items, "__len__") and hasattr(scores, "__len__"):
                if len(items) != len(scores):  # type: ignore[arg-type]
                    raise ValueError("got %d items but %d scores" % (len(items), len(scores)))  # type: ignore
            return int(await self._run(adds.add_many(self, items, scores, flags)))
        if scores is not None:
            raise TypeError("scores cannot go with an async iterable of items: use a scorer")
        added = 0
        chunk: List[Any] = []
        offset = 0
        async for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk_size:
                added += await self._add_chunk(chunk, flags, offset, added)
                offset += len(chunk)
                chunk = []
        if chunk:
            added += await self._add_chunk(chunk, flags, offset, added)
        return added

    async def _add_chunk(self, chunk: List[Any], flags: Any, offset: int, added: int) -> int:
        try:
            return int(await self._run(adds.add_many(self, chunk, None, flags, offset)))
        except BaseException as exc:
            outcome = getattr(exc, "outcome", None)
            if outcome is not None:
                outcome.after(offset, added)  # the earlier chunks are stored
            raise

    async def pop(self, timeout: Optional[float] = None, lease: Optional[float] = None) -> Any:
        """Remove and return the lowest-scored item (see :meth:`redset.sets.SortedSet.pop`).

        :raises KeyError: if there is no item (within ``timeout``).
        """
        items = await self.take(1, timeout=timeout, lease=lease)
        if not items:
            raise KeyError("%s is empty" % self.name)
        return items[0]

    async def take(self, num: int, timeout: Optional[float] = None, lease: Optional[float] = None) -> List[Any]:
        """Remove and return up to ``num`` lowest-scored items (see
        :meth:`redset.sets.SortedSet.take`)."""
        num = check_take(num, timeout, lease)
        if num < 1:
            return []
        read_timeout = await self._io.socket_timeout() if timeout is not None else None
        return list(await self._run(pops.take(self, num, timeout, lease, read_timeout, self._make_lease)))

    def drain(self, batch_size: int = 1000, *, window: int = DRAIN_WINDOW) -> AsyncIterator[List[Any]]:
        """Pop batches until the set is empty, up to ``window`` pops in flight
        besides the one being received (an async iterator; see
        :meth:`redset.sets.SortedSet.drain`).

        If the process dies, up to ``window + 1`` batches popped but not yet
        handed over are lost. Stopping early (``break``, ``aclose()``) or a
        cancellation reads every pop in flight and puts its items back.
        """
        batch_size = check_batch_size(batch_size)
        window = check_window(window)
        return self._io.iterate(pops.drain(self, batch_size, window))  # type: ignore[no-any-return]

    def consumer(self, lease: float = 30.0, batch_size: int = 10, timeout: Optional[float] = None,
                 handle_signals: bool = False, ack_delay: Optional[float] = None) -> "Consumer":
        """A leased consumer loop: ``async with s.consumer(lease=30) as items: async for item in items``."""
        return Consumer(self, lease=lease, batch_size=batch_size, timeout=timeout, handle_signals=handle_signals,
                        ack_delay=ack_delay)

    async def ack_many(self, leases: Iterable["Lease"]) -> int:
        """Ack many leases in one round trip per 1,000 (see :meth:`redset.sets.SortedSet.ack_many`)."""
        todo = leasing.unsettled(self, leases)
        acked, stale = await self._run(leasing.ack_many(self, todo))
        if stale:
            err = StaleLeaseError("%d of %d leases on %r were no longer held; the other %d were acked"
                                  % (len(stale), len(todo), self.name, acked), self.name)
            err.stale = stale  # type: ignore[attr-defined]
            raise err
        return int(acked)

    async def in_flight(self) -> int:
        """The number of leased items not yet acked, nacked or reclaimed."""
        return int(await self._run(reads.in_flight(self)))

    async def stats(self) -> "SetStats":
        """The set's figures in one round trip: length, due items, age of the
        oldest due item, next due time, in flight, oldest lease, dead letters
        (see :class:`redset.stats.SetStats` for what each means per class)."""
        return await self._run(reads.stats(self))  # type: ignore[no-any-return]

    async def in_flight_items(self, num: int = 100) -> List["InFlightItem"]:
        """Up to ``num`` leased items (item, score, deliveries, deadline, when
        taken), the earliest deadline first, without touching them."""
        return list(await self._run(reads.in_flight_items(self, int(num))))

    async def dead_letters(self, num: int = 100) -> List[Any]:
        """Up to ``num`` items in the dead-letter set, without removing them."""
        return list(await self._run(leasing.dead_letters(self, num)))

    async def dead_count(self) -> int:
        """The number of items in the dead-letter set."""
        return int(await self._run(reads.dead_count(self)))

    async def requeue_dead(self, num: int = 1000) -> int:
        """Move up to ``num`` dead letters back into the set at their original scores."""
        return int(await self._run(leasing.requeue_dead(self, num)))

    async def clear(self, *, keep_dead_letters: bool = False) -> int:
        """Delete the set and every key it owns (see :meth:`redset.sets.SortedSet.clear`)."""
        return int(await self._run(reads.clear(self, keep_dead_letters)))

    async def discard(self, item: Any) -> bool:
        """Remove ``item``; True if it was in the set."""
        return bool(await self._run(reads.discard(self, item)))

    async def peek(self, position: int = 0) -> Any:
        """The item at rank ``position`` without removing it; ``KeyError`` if none."""
        return await self._run(reads.peek(self, int(position)))

    async def score(self, item: Any) -> Optional[float]:
        """The score of ``item``, or None if it is not in the set."""
        return await self._run(reads.score(self, item))  # type: ignore[no-any-return]

    async def peek_score(self) -> Optional[float]:
        """The score of the next item to pop, or None if there is none."""
        return await self._run(reads.peek_score(self))  # type: ignore[no-any-return]


class TimeSortedSet(TimeScored, SortedSet):
    """FIFO by time of add (the asyncio twin of :class:`redset.sets.TimeSortedSet`)."""


class ScheduledSet(TimeSortedSet):
    """Items become poppable at their score (the asyncio twin of
    :class:`redset.sets.ScheduledSet`)."""

    _due_only = True

    async def available(self) -> int:
        """The number of items that are due now."""
        return int(await self._run(reads.available(self)))


class Lease(consuming.LeaseBase):
    """One leased item: settle it with :meth:`ack`, :meth:`nack` or :meth:`extend` (coroutines).

    Same attributes and outcomes as :class:`redset.leases.Lease`.
    """

    __slots__ = ()

    async def ack(self) -> None:
        """Remove the item for good (see :meth:`redset.leases.Lease.ack`)."""
        await self._set._run(consuming.ack(self))

    async def nack(self, score: Optional[float] = None, delay: Optional[float] = None) -> bool:
        """Put the item back (see :meth:`redset.leases.Lease.nack`)."""
        return bool(await self._set._run(consuming.nack(self, score, delay)))

    async def extend(self, seconds: float) -> None:
        """Renew the lease to expire ``seconds`` from now."""
        await self._set._run(consuming.extend(self, seconds))


class Consumer(consuming.ConsumerBase):
    """The asyncio consumer loop: ack on next, nack on exception.

    ::

        async with jobs.consumer(lease=30) as items:
            async for item in items:
                await handle(item)

    Asking for the next item marks the previous one done; done items are
    acked together (see :class:`redset.leases.Consumer` for when:
    ``ack_delay``); an exception out of the body nacks the current item and
    puts the rest of its batch back uncharged; a task acks what waits too
    long and extends the leases held every ``lease / 3`` seconds. Cancelling the task running the loop stops it: the current
    item is nacked, the rest put back, and the cancellation goes on. With
    ``handle_signals=True`` SIGTERM/SIGINT stop the loop after the current
    item (through the event loop's signal handlers, restored on exit, and
    the signal is then re-delivered to the previous handler).
    """

    def __init__(self, owner: SortedSet, lease: float = 30.0, batch_size: int = 10,
                 timeout: Optional[float] = None, handle_signals: bool = False,
                 ack_delay: Optional[float] = None) -> None:
        super().__init__(owner, lease, batch_size, timeout, handle_signals, asyncio.Event(),
                         contextlib.nullcontext(), ack_delay)
        self._extender: Optional["asyncio.Task[None]"] = None
        self._signals: List[int] = []

    async def __aenter__(self) -> "Consumer":
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._signals.append(sig)
        self._extender = asyncio.ensure_future(self._extend_loop())
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            await self._set._run(consuming.finish(self, exc_type is not None))
        finally:
            self.stopping.set()
            if self._extender is not None:
                self._extender.cancel()
                await asyncio.gather(self._extender, return_exceptions=True)
            if self._signals:
                loop = asyncio.get_running_loop()
                for sig in self._signals:
                    loop.remove_signal_handler(sig)
                self._signals = []
                if self.signalled is not None:
                    signal.raise_signal(self.signalled)

    def _on_signal(self, signum: int) -> None:
        if self.signalled is None:
            self.signalled = signum
        self.stopping.set()

    async def _extend_loop(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(self._tick_every())
            try:
                await self._set._run(consuming.tick(self))
            except Exception:  # noqa: BLE001 - the server is away: retried next interval
                pass

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        read_timeout = await self._set._io.socket_timeout()
        while True:
            item = await self._set._run(consuming.next_item(self, read_timeout))
            if item is consuming.END:
                return
            yield item
