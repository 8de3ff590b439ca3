"""At-least-once delivery: leases, their handles and a consumer loop.

``take(n, lease=seconds)`` moves items, in one Lua script, from the set into
an in-flight sorted set scored by the lease deadline, and returns
:class:`Lease` handles. ``ack`` removes an item for good, ``nack`` puts it
back, ``extend`` renews the lease. Leases that expire are reclaimed by the
next leased take of any consumer, at the item's original score; after
``max_deliveries`` deliveries an item goes to the dead-letter set instead.
"""
from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Tuple

from redset._core import consuming
from redset._core.config import lease_keys, new_token

if TYPE_CHECKING:
    from redset.sets import SortedSet

__all__ = ["Lease", "Consumer", "lease_keys", "new_token"]


class Lease(consuming.LeaseBase):
    """One leased item: settle it with :meth:`ack`, :meth:`nack` or :meth:`extend`.

    :ivar item: the deserialized item.
    :ivar score: its score in the set (restored on nack and on expiry).
    :ivar deliveries: how many times it has been leased, this time included.
    :ivar token: the token of this lease.
    :ivar deadline: UNIX time at which the lease expires.

    Handles are built by the thousand, by the codec, and kept out of Python's
    cycle collector: an item that holds a reference to its own handle makes a
    cycle that is only freed once you break it.
    """

    __slots__ = ()

    def ack(self) -> None:
        """Remove the item for good.

        :raises StaleLeaseError: the lease is no longer held by this handle.
        :raises OutcomeUnknown: the connection failed after the ack was
            sent; it may have been applied (if not, the lease expires and the
            item is delivered again).
        """
        self._set._run(consuming.ack(self))

    def nack(self, score: Optional[float] = None, delay: Optional[float] = None) -> bool:
        """Put the item back.

        ==================================================  ==========================================
        call                                                the item comes back
        ==================================================  ==========================================
        ``nack()``                                          at once, at its original score
        ``nack(score=s)``                                   at once, at score ``s``
        ``nack(delay=d)`` on a SortedSet or TimeSortedSet   after ``d`` seconds, at its original score
                                                            (it stays in flight, held, until then)
        ``nack(delay=d)`` on a ScheduledSet                 due ``d`` seconds from now (score = now + d)
        ==================================================  ==========================================

        :returns: False if it went to the dead-letter set instead
            (``max_deliveries`` reached).
        :raises StaleLeaseError: the lease is no longer held by this handle.
        """
        return bool(self._set._run(consuming.nack(self, score, delay)))

    def extend(self, seconds: float) -> None:
        """Renew the lease to expire ``seconds`` from now.

        :raises StaleLeaseError: the lease is no longer held by this handle.
        """
        self._set._run(consuming.extend(self, seconds))


class Consumer(consuming.ConsumerBase):
    """Iterate over leased items; ack on success, nack on failure.

    Use as a context manager::

        with jobs.consumer(lease=30) as items:
            for item in items:
                handle(item)

    Asking for the next item marks the previous one done; done items are
    acked together, in one call, when the next batch is asked for, when the
    block ends, and at the latest ``ack_delay`` seconds (default 0.1, at
    most ``lease / 3``) after the first of them was done, by the background
    thread. ``ack_delay=0`` acks each item at once (one round trip each).
    A crash repeats the item being handled and the items done within the
    last ``ack_delay`` (see docs/delivery.md). An exception out of the
    loop body nacks the current item (that counts as a delivery), then
    propagates. Items of the batch that were never handed to the body are
    put back at their original score *without* being charged a delivery
    (so an innocent item is never dead-lettered because another one in its
    batch failed). While the body runs, a background thread extends the
    leases held every ``lease / 3`` seconds. With ``timeout=None``
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
                 timeout: Optional[float] = None, handle_signals: bool = True,
                 ack_delay: Optional[float] = None) -> None:
        super().__init__(owner, lease, batch_size, timeout, handle_signals, threading.Event(), threading.Lock(),
                         ack_delay)
        self._extender: Optional[threading.Thread] = None
        self._old_handlers: List[Tuple[int, Any]] = []
        self._received: List[int] = []

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
            self._set._run(consuming.finish(self, exc_type is not None))
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

    def _extend_loop(self) -> None:
        while not self.stopping.wait(self._tick_every()):
            try:
                self._set._run(consuming.tick(self))
            except Exception:  # noqa: BLE001 - the server is away: retried next interval
                pass

    # -- iteration --------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        read_timeout = self._set._io.socket_timeout()
        while True:
            item = self._set._run(consuming.next_item(self, read_timeout))
            if item is consuming.END:
                return
            yield item
