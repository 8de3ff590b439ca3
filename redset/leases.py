"""At-least-once delivery: leases, their handles and a consumer loop.

``take(n, lease=seconds)`` moves items, in one Lua script, from the set into
an in-flight sorted set scored by the lease deadline, and returns
:class:`Lease` handles. ``ack`` removes an item for good, ``nack`` puts it
back, ``extend`` renews the lease. Leases that expire are reclaimed by the
next leased take of any consumer, at the item's original score; after
``max_deliveries`` deliveries an item goes to the dead-letter set instead.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Tuple

from redset._core import leasing
from redset._core.config import lease_keys, new_token
from redset.exceptions import OutcomeUnknown, StaleLeaseError

if TYPE_CHECKING:
    from redset.sets import SortedSet

__all__ = ["Lease", "Consumer", "lease_keys", "new_token"]

log = logging.getLogger(__name__)


class Lease:
    """One leased item: settle it with :meth:`ack`, :meth:`nack` or :meth:`extend`.

    :ivar item: the deserialized item.
    :ivar score: its score in the set (restored on nack and on expiry).
    :ivar deliveries: how many times it has been leased, this time included.
    :ivar token: the token of this lease.
    :ivar deadline: UNIX time at which the lease expires.
    """

    __slots__ = ("item", "score", "deliveries", "token", "deadline", "member", "_set", "settled")

    def __init__(self, owner: "SortedSet", member: bytes, item: Any, score: float,
                 deliveries: int, token: str, deadline: float) -> None:
        self._set = owner
        self.member = member
        self.item = item
        self.score = score
        self.deliveries = deliveries
        self.token = token
        self.deadline = deadline
        self.settled = False

    def __repr__(self) -> str:
        return "<Lease item=%r deliveries=%d deadline=%.3f>" % (self.item, self.deliveries, self.deadline)

    def _settle(self, op: str, arg: str = "") -> int:
        owner = self._set
        return int(owner._run(leasing.settle(owner, self.member, self.token, self.item, op, arg)))

    def ack(self) -> None:
        """Remove the item for good.

        :raises StaleLeaseError: the lease is no longer held by this handle.
        :raises OutcomeUnknown: the connection failed after the ack was
            sent; it may have been applied (if not, the lease expires and the
            item is delivered again).
        """
        self._settle("ack")
        self.settled = True

    def nack(self, score: Optional[float] = None, delay: Optional[float] = None) -> bool:
        """Put the item back.

        ============================  ===============================================
        call                          the item comes back
        ============================  ===============================================
        ``nack()``                    at once, at its original score
        ``nack(score=s)``             at once, at score ``s``
        ``nack(delay=d)``, Sorted/    after ``d`` seconds, at its original score (it
        TimeSortedSet                 stays in flight, held, until then)
        ``nack(delay=d)``,            due ``d`` seconds from now (score = now + d)
        ScheduledSet
        ============================  ===============================================

        :returns: False if it went to the dead-letter set instead
            (``max_deliveries`` reached).
        :raises StaleLeaseError: the lease is no longer held by this handle.
        """
        result = bool(self._set._run(leasing.nack(self._set, self, score, delay)))
        self.settled = True
        return result

    def extend(self, seconds: float) -> None:
        """Renew the lease to expire ``seconds`` from now.

        :raises StaleLeaseError: the lease is no longer held by this handle.
        """
        self.deadline = self._set._run(leasing.extend(self._set, self, seconds))


class Consumer:
    """Iterate over leased items; ack on success, nack on failure.

    Use as a context manager::

        with jobs.consumer(lease=30) as items:
            for item in items:
                handle(item)

    Asking for the next item acks the previous one. An exception out of the
    loop body nacks the current item (that counts as a delivery), then
    propagates. Items of the batch that were never handed to the body are
    put back at their original score *without* being charged a delivery
    (so an innocent item is never dead-lettered because another one in its
    batch failed). While the body runs, a background thread extends the
    leases of the batch every ``lease / 3`` seconds. With ``timeout=None``
    the iteration waits for work forever; otherwise it ends when no work
    came for ``timeout`` seconds.

    Signals: inside the block, SIGTERM and SIGINT are *deferred*: the
    iteration stops after the current item, the rest of the batch is put
    back, and when the block exits the previous handlers are restored and
    each signal received is delivered to them again, so a default SIGTERM
    ends the process after the cleanup and SIGINT raises
    ``KeyboardInterrupt`` after the block. :attr:`signalled` records the
    first one (None if none came). A signal is never lost, even when it
    arrives while the block exits on an exception.
    """

    def __init__(self, owner: "SortedSet", lease: float = 30.0, batch_size: int = 10,
                 timeout: Optional[float] = None, handle_signals: bool = True) -> None:
        if lease <= 0:
            raise ValueError("lease must be positive")
        self._set = owner
        self.lease = lease
        self.batch_size = int(batch_size)
        self.timeout = timeout
        self.handle_signals = handle_signals
        self.stopping = threading.Event()
        self._batch: List[Lease] = []
        self._current: Optional[Lease] = None
        self._lock = threading.Lock()
        self._extender: Optional[threading.Thread] = None
        self._old_handlers: List[Tuple[int, Any]] = []
        self._received: List[int] = []
        #: The first SIGTERM/SIGINT received inside the block, or None.
        self.signalled: Optional[int] = None
        self.acked = 0
        self.nacked = 0

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> "Consumer":
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers.append((sig, signal.signal(sig, self._on_signal)))
        self._extender = threading.Thread(target=self._extend_loop, name="redset-lease-extender", daemon=True)
        self._extender.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            with self._lock:
                current, self._current = self._current, None
                rest, self._batch = self._batch, []
            if current is not None and not current.settled:
                if exc_type is None:
                    self._ack(current)
                else:
                    self._nack(current)
            self._release(rest)
        finally:
            self.stopping.set()
            if self._extender is not None:
                self._extender.join(5)
            # Restore first, then re-deliver: a signal that arrives between
            # the two goes to the previous handler directly; one received
            # before is delivered to it now. Nothing is taken and dropped.
            for sig, handler in self._old_handlers:
                signal.signal(sig, handler)
            self._old_handlers = []
            received, self._received = self._received, []
            for sig in received:
                signal.raise_signal(sig)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signalled is None:
            self.signalled = signum
        if signum not in self._received:
            self._received.append(signum)
        self.stopping.set()

    def stop(self) -> None:
        """Stop after the current item."""
        self.stopping.set()

    # -- settling --------------------------------------------------------------
    def _ack(self, lease: Lease) -> None:
        try:
            lease.ack()
            self.acked += 1
        except StaleLeaseError:
            pass  # it expired and was re-leased: the other consumer owns it now
        except OutcomeUnknown as exc:
            # At-least-once: if the ack did not apply, the item comes back
            # when its lease expires.
            log.warning("ack of %r on %s may not have applied: %s", lease.item, self._set.name, exc)

    def _nack(self, lease: Lease) -> None:
        try:
            lease.nack()
            self.nacked += 1
        except StaleLeaseError:
            pass

    def _release(self, leases: List[Lease]) -> None:
        """Put back leased items never handed to the body, uncharged."""
        held = [x for x in leases if not x.settled]
        if held:
            self._set._run(leasing.release_many(self._set, held))

    def _extend_loop(self) -> None:
        interval = self.lease / 3.0
        while not self.stopping.wait(interval):
            with self._lock:
                held = [x for x in ([self._current] if self._current else []) + self._batch if not x.settled]
            for lease in held:
                try:
                    lease.extend(self.lease)
                except StaleLeaseError:
                    pass
                except Exception:  # noqa: BLE001 - a failed extend is retried next interval
                    pass

    # -- iteration --------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        while True:
            with self._lock:
                previous, self._current = self._current, None
            if previous is not None and not previous.settled:
                self._ack(previous)
            if self.stopping.is_set():
                return
            if not self._batch:
                wait = self.timeout
                got: List[Lease] = []
                while not got and not self.stopping.is_set():
                    slice_ = 1.0 if wait is None else min(1.0, wait)
                    got = self._set.take(self.batch_size, lease=self.lease, timeout=slice_)
                    if not got and wait is not None:
                        wait -= slice_
                        if wait <= 0:
                            return
                if not got:
                    return
                with self._lock:
                    self._batch = got
            with self._lock:
                self._current = self._batch.pop(0)
                current = self._current
            yield current.item
