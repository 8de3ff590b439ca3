"""Lease handles and the consumer loop, as state and plans both facades share.

:class:`LeaseBase` is one leased item; :class:`ConsumerBase` the state of a
``consumer()`` block. The plans here (:func:`ack`, :func:`nack`,
:func:`extend`, :func:`next_item`, :func:`finish`, :func:`extend_held`) do
all the work: the sync consumer runs them on its driver, with a thread for
the extender; the asyncio one on its driver, with a task.
"""
from __future__ import annotations

import logging
from typing import Any, ContextManager, List, Optional

from redset._core import leasing, pops, sharding
from redset._core.steps import Plan
from redset.exceptions import OutcomeUnknown, StaleLeaseError

__all__ = ["LeaseBase", "ConsumerBase", "END", "ack", "nack", "extend", "next_item", "finish", "extend_held"]

log = logging.getLogger("redset.leases")

#: Longest single wait of a consumer between two looks at its stop flag.
WAIT_SLICE = 1.0


class LeaseBase:
    """One leased item (see :class:`redset.leases.Lease`)."""

    __slots__ = ("item", "score", "deliveries", "token", "deadline", "member", "_set", "settled", "_n")

    def __init__(self, owner: Any, member: bytes, item: Any, score: float, deliveries: int,
                 token: str, deadline: float) -> None:
        self._set = owner
        self.member = member
        self.item = item
        self.score = score
        self.deliveries = deliveries
        self.token = token
        self.deadline = deadline
        self.settled = False
        #: The size of the batch (the take) this lease belongs to, while every
        #: lease of it shares its token; 0 if unknown.
        self._n = 0

    def __repr__(self) -> str:
        return "<Lease item=%r deliveries=%d deadline=%.3f>" % (self.item, self.deliveries, self.deadline)


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
                 handle_signals: bool, stopping: Any, lock: ContextManager[Any]) -> None:
        if not lease > 0:
            raise ValueError("lease must be a positive number of seconds, got %r" % (lease,))
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

    def stop(self) -> None:
        """Stop after the current item."""
        self.stopping.set()

    def _held(self) -> List[Any]:
        with self._lock:
            current = [self._current] if self._current is not None else []
            return [x for x in current + self._batch if not x.settled]


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
    """The next leased item of the loop, or :data:`END`; asking acks the last.

    Waits for work in slices of :data:`WAIT_SLICE` so a stop request is seen
    within one; ends after ``timeout`` seconds without work (never, if None).
    """
    owner = c._set
    with c._lock:
        previous, c._current = c._current, None
    if previous is not None and not previous.settled:
        yield from _settle_quietly(c, previous, True)
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


def finish(c: ConsumerBase, failed: bool) -> Plan[None]:
    """End of the block: ack the current item (nack it if the body raised),
    put the rest of the batch back uncharged."""
    with c._lock:
        current, c._current = c._current, None
        rest, c._batch = c._batch, []
    if current is not None and not current.settled:
        yield from _settle_quietly(c, current, not failed)
    held = [x for x in rest if not x.settled]
    if held:
        yield from leasing.release_many(c._set, held)


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
