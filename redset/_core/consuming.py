"""Lease handles and the consumer loop, as state and plans both facades share.

:class:`LeaseBase` is one leased item; :class:`ConsumerBase` the state of a
``consumer()`` block. The plans here (:func:`ack`, :func:`nack`,
:func:`extend`, :func:`next_item`, :func:`finish`, :func:`extend_held`) do
all the work: the sync consumer runs them on its driver, with a thread for
the extender; the asyncio one on its driver, with a task.
"""
from __future__ import annotations

import logging
import time
from typing import Any, ContextManager, List, Optional

from redset._core import leasing, pops, sharding
from redset._core.handles import LeaseBase, LeaseBatch
from redset._core.steps import Plan
from redset.exceptions import OutcomeUnknown, StaleLeaseError

__all__ = ["LeaseBase", "LeaseBatch", "ConsumerBase", "END", "ack", "nack", "extend", "next_item", "finish", "extend_held", "flush_acks",
           "tick", "DEFAULT_ACK_DELAY"]

log = logging.getLogger("redset.leases")

#: Longest single wait of a consumer between two looks at its stop flag.
WAIT_SLICE = 1.0
#: Seconds a finished item may wait for its ack by default (``consumer(ack_delay=...)``;
#: never more than a third of the lease).
DEFAULT_ACK_DELAY = 0.1


def ack(lease: LeaseBase) -> Plan[None]:
    """Remove a leased item for good (:class:`StaleLeaseError` if not held)."""
    yield from leasing.ack(lease._set, lease)
    lease.settled = True


def nack(lease: LeaseBase, score: Optional[float], delay: Optional[float]) -> Plan[bool]:
    """Put a leased item back; False if it went to the dead letters."""
    result = yield from leasing.nack(lease._set, lease, score, delay)
    lease.settled = True
    return result


def extend(lease: LeaseBase, seconds: float) -> Plan[None]:
    """Renew a lease to expire ``seconds`` from now."""
    yield from leasing.extend(lease._set, lease, seconds)


class ConsumerBase:
    """The state of one ``consumer()`` block.

    ``stopping`` is an event (``threading.Event`` or ``asyncio.Event``) and
    ``lock`` guards the batch against the extender (a ``threading.Lock``, or
    a no-op where the extender is a task on the same loop).
    """

    def __init__(self, owner: Any, lease: float, batch_size: int, timeout: Optional[float],
                 handle_signals: bool, stopping: Any, lock: ContextManager[Any],
                 ack_delay: Optional[float] = None) -> None:
        if not lease > 0:
            raise ValueError("lease must be a positive number of seconds, got %r" % (lease,))
        if ack_delay is None:
            ack_delay = min(DEFAULT_ACK_DELAY, lease / 3.0)
        if not 0 <= ack_delay <= lease / 3.0:
            raise ValueError("ack_delay must be between 0 and lease / 3 (%r) seconds, got %r"
                             % (lease / 3.0, ack_delay))
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0, got %r" % (timeout,))
        self._set = owner
        self.lease = lease
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1, got %r" % (batch_size,))
        self.timeout = timeout
        self.handle_signals = handle_signals
        self.stopping = stopping
        self._lock = lock
        self._batch: List[Any] = []
        self._current: Optional[Any] = None
        #: The first SIGTERM/SIGINT received inside the block, or None.
        self.signalled: Optional[int] = None
        self.acked = 0
        self.nacked = 0
        #: Seconds an item may wait, done, for its ack (see :func:`next_item`).
        self.ack_delay = float(ack_delay)
        self._done: List[Any] = []  # finished, not acked yet
        self._done_since = 0.0  # time.monotonic() when the oldest of them finished
        self._extended = time.monotonic()

    def stop(self) -> None:
        """Stop after the current item."""
        self.stopping.set()

    def _held(self) -> List[Any]:
        with self._lock:
            current = [self._current] if self._current is not None else []
            return [x for x in self._done + current + self._batch if not x.settled]

    def _tick_every(self) -> float:
        """How often the background extender must look at the block."""
        every = self.lease / 3.0
        return min(every, self.ack_delay) if self.ack_delay > 0 else every


def _on_owner(c: ConsumerBase, lease: LeaseBase, plan: Plan[Any]) -> Plan[Any]:
    """Run a plan about ``lease`` where its set lives: inline, or, when the
    consumer's set is sharded, on the lease's shard."""
    if lease._set is c._set:
        return (yield from plan)
    return (yield from sharding.on_shard(lease._set, plan))


def _settle_quietly(c: ConsumerBase, lease: LeaseBase, ok: bool) -> Plan[None]:
    """Ack (``ok``) or nack one item; a lease lost meanwhile is someone else's now."""
    try:
        if ok:
            yield from _on_owner(c, lease, ack(lease))
            c.acked += 1
        else:
            yield from _on_owner(c, lease, nack(lease, None, None))
            c.nacked += 1
    except StaleLeaseError:
        pass  # it expired and was re-leased: the other consumer owns it now
    except OutcomeUnknown as exc:
        if not ok:
            raise
        # At-least-once: if the ack did not apply, the item comes back when
        # its lease expires.
        log.warning("ack of %r on %s may not have applied: %s", lease.item, c._set.name, exc)


#: What :func:`next_item` returns when the loop is over.
END = object()


def next_item(c: ConsumerBase, read_timeout: Optional[float]) -> Plan[Any]:
    """The next leased item of the loop, or :data:`END`.

    Asking for it marks the last item done. Done items are acked together,
    in one call: before the next batch is taken (a batch whose every item
    was done is one ``DEL``), when the block ends, and at the latest
    ``ack_delay`` seconds after the first of them was done (by the
    background extender, :func:`tick`, when the body takes longer). With
    ``ack_delay=0`` every item is acked at once, one round trip each.

    Waits for work in slices of :data:`WAIT_SLICE` so a stop request is seen
    within one; ends after ``timeout`` seconds without work (never, if None).
    """
    owner = c._set
    with c._lock:
        previous, c._current = c._current, None
        if previous is not None and not previous.settled and c.ack_delay > 0:
            if not c._done:
                c._done_since = time.monotonic()
            c._done.append(previous)
            previous = None
    if previous is not None and not previous.settled:
        yield from _settle_quietly(c, previous, True)
    if c._done and (not c._batch or c.stopping.is_set()
                    or time.monotonic() - c._done_since >= c.ack_delay):
        yield from flush_acks(c)
    if c.stopping.is_set():
        return END
    if not c._batch:
        wait = c.timeout
        got: List[Any] = []
        while not got and not c.stopping.is_set():
            slice_ = WAIT_SLICE if wait is None else min(WAIT_SLICE, wait)
            got = list((yield from pops.take(owner, c.batch_size, slice_, c.lease, read_timeout,
                                             owner._make_lease)))
            if not got and wait is not None:
                wait -= slice_
                if wait <= 0:
                    return END
        if not got:
            return END
        with c._lock:
            c._batch = got
    with c._lock:
        c._current = current = c._batch.pop(0)
    return current.item


def flush_acks(c: ConsumerBase) -> Plan[None]:
    """Ack the items done so far, in one call; leases lost meanwhile are
    someone else's now, and an ack whose outcome is unknown is logged (if it
    did not apply, the items come back when their leases expire)."""
    with c._lock:
        done, c._done = c._done, []
    done = [x for x in done if not x.settled]
    if not done:
        return
    try:
        acked, _stale = yield from leasing.ack_many(c._set, done)
        c.acked += acked
    except OutcomeUnknown as exc:
        log.warning("ack of %d items on %s may not have applied: %s", len(done), c._set.name, exc)


def finish(c: ConsumerBase, failed: bool) -> Plan[None]:
    """End of the block: ack the items done and the current one (nack the
    current one if the body raised), put the rest of the batch back uncharged."""
    with c._lock:
        current, c._current = c._current, None
        rest, c._batch = c._batch, []
        if current is not None and not current.settled and not failed:
            c._done.append(current)
            current = None
    yield from flush_acks(c)
    if current is not None and not current.settled:
        yield from _settle_quietly(c, current, False)
    held = [x for x in rest if not x.settled]
    if held:
        yield from leasing.release_many(c._set, held)


def tick(c: ConsumerBase) -> Plan[None]:
    """What the background extender does at each look: ack the items done
    ``ack_delay`` ago or more, and renew the leases held every ``lease / 3``."""
    now = time.monotonic()
    if c._done and now - c._done_since >= c.ack_delay:
        try:
            yield from flush_acks(c)
        except Exception:  # noqa: BLE001 - the server is away: the loop or the next look retries
            pass
    if now - c._extended >= c.lease / 3.0:
        c._extended = now
        yield from extend_held(c)


def extend_held(c: ConsumerBase) -> Plan[None]:
    """Renew every lease the block holds, in one call per set (a batch whose
    every lease is held just moves its deadline); failures wait for the
    next round, and a lease found stale is someone else's now."""
    held = c._held()
    if held:
        try:
            yield from leasing.extend_many(c._set, held, c.lease)
        except Exception:  # noqa: BLE001 - the server is away: retried next interval
            pass
