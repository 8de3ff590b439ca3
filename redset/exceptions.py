"""Exceptions raised by redset.

``LockTimeout`` keeps its 0.5.1 name and module. The rest are new in 1.0; each
subclasses the builtin or redis-py exception that code written for redset 0.5.1
(or for redis-py) would already catch.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import redis.exceptions

__all__ = [
    "RedsetError",
    "LockTimeout",
    "InvalidItemError",
    "InvalidScoreError",
    "InvalidScoreValueError",
    "OutcomeUnknown",
    "PopOutcomeUnknown",
    "DeserializationError",
    "StaleLeaseError",
    "AddOutcome",
]


class RedsetError(Exception):
    """Base class of the exceptions that redset itself raises."""


class LockTimeout(RedsetError):
    """Raised when a :class:`redset.locks.Lock` is not acquired within its timeout."""


class _BatchInputMixin:
    index: Optional[int]
    sent: int

    def _init_batch(self, index: Optional[int], sent: int) -> None:
        self.index = index
        self.sent = sent


class InvalidItemError(RedsetError, TypeError, _BatchInputMixin):
    """An item could not be encoded by the set's serializer.

    Raised before the chunk that holds the item is sent. ``index`` is the
    item's position in the input (``None`` for single-item calls) and ``sent``
    the number of earlier items that were already sent to the server (0 unless
    the input spanned several chunks).
    """

    def __init__(self, message: str, index: Optional[int] = None, sent: int = 0) -> None:
        super().__init__(message)
        self._init_batch(index, sent)


class InvalidScoreError(RedsetError, TypeError, _BatchInputMixin):
    """A score is of a type that is not a real number (bool, None, str, Decimal, ...)."""

    def __init__(self, message: str, index: Optional[int] = None, sent: int = 0) -> None:
        super().__init__(message)
        self._init_batch(index, sent)


class InvalidScoreValueError(RedsetError, ValueError, _BatchInputMixin):
    """A score is a number that Redis cannot store (NaN) or is out of float range."""

    def __init__(self, message: str, index: Optional[int] = None, sent: int = 0) -> None:
        super().__init__(message)
        self._init_batch(index, sent)


class OutcomeUnknown(RedsetError, redis.exceptions.ConnectionError):
    """The connection failed after a command that must not be repeated was
    sent and before its reply arrived: it may or may not have been applied.

    redset re-sends such a command never, because repeating it could do its
    work twice. The underlying error is ``__cause__``; ``key`` names the set.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class PopOutcomeUnknown(OutcomeUnknown):
    """A pop's connection failed after it was sent and before its reply arrived.

    The server may or may not have removed the items; they were not
    delivered. A second pop could remove further items while the first ones
    are lost, so it is not re-sent.
    """


class DeserializationError(RedsetError, ValueError):
    """Popped items could not be deserialized and the set is told to raise.

    ``items`` holds the items that did load (they are already removed from the
    set, so handle them), ``failures`` the raw bytes and the error of each item
    that did not. When the set has a ``dead_letter_key`` the failed raw items
    were moved there before this was raised.
    """

    def __init__(
        self,
        message: str,
        items: List[Any],
        failures: List[Tuple[bytes, BaseException]],
    ) -> None:
        super().__init__(message)
        self.items = items
        self.failures = failures


class StaleLeaseError(RedsetError):
    """An ack, nack or extend came from a consumer that no longer holds the lease.

    Its lease expired and the item was reclaimed (and possibly delivered to
    another consumer, who now holds it), or the lease was already settled.
    Nothing was changed.
    """

    def __init__(self, message: str, key: str = "", token: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.token = token


Ranges = List[Tuple[int, int]]


class AddOutcome:
    """What an ``add_many`` that raised did, item by item.

    Found as ``exc.outcome`` on every exception that ``add_many`` raises
    (which keeps its own class: ``except redis.OutOfMemoryError`` still
    works). Each attribute is a list of half-open ranges ``(start, stop)`` of
    indices into the input.

    :ivar stored: the server applied these items' ``ZADD`` (for ``ZADD NX``
        that includes members that were already there).
    :ivar refused: the server refused these items' command with an error
        reply: none of them was stored.
    :ivar unknown: sent, but the connection was lost before the reply: they
        may or may not be stored.
    :ivar not_sent_from: the index of the first item never sent; every item
        from there on was not sent (for an iterator, the items after
        ``consumed`` were not even taken from it).
    :ivar not_sent: items before ``not_sent_from`` that were not sent either
        (a sharded set sends a round of input to all its shards at once; a
        shard that failed leaves the rest of its part of the round unsent).
    :ivar consumed: how many items were taken from the input.
    :ivar added: new members the server reported for the stored ranges.

    Re-sending every range of :meth:`retry_ranges` (``ZADD NX`` makes a
    re-send of an item that was stored after all harmless) completes the add.
    """

    def __init__(self) -> None:
        self.stored: Ranges = []
        self.refused: Ranges = []
        self.unknown: Ranges = []
        self.not_sent: Ranges = []
        self.not_sent_from: Optional[int] = None
        self.consumed = 0
        self.added = 0

    @staticmethod
    def _append(ranges: Ranges, start: int, stop: int) -> None:
        if stop <= start:
            return
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))

    def retry_ranges(self) -> Ranges:
        """The ranges to send again: refused, unknown, and never sent (up to ``consumed``)."""
        out: Ranges = []
        for start, stop in sorted(self.refused + self.unknown + self.not_sent):
            self._append(out, start, stop)
        if self.not_sent_from is not None:
            self._append(out, self.not_sent_from, self.consumed)
        return out

    def after(self, stored_before: int, added_before: int) -> "AddOutcome":
        """Count items ``[0, stored_before)`` as stored by earlier calls."""
        if stored_before:
            self.stored.insert(0, (0, stored_before))
            if len(self.stored) > 1 and self.stored[1][0] == stored_before:
                self.stored[0:2] = [(0, self.stored[1][1])]
        self.added += added_before
        return self

    def __str__(self) -> str:
        def words(ranges: Ranges) -> str:
            return ", ".join("%d-%d" % (a, b - 1) if b - a > 1 else "%d" % a for a, b in ranges) or "none"

        text = "stored: %s; refused: %s; unknown: %s" % (
            words(self.stored), words(self.refused), words(self.unknown))
        if self.not_sent:
            text += "; not sent: %s" % words(self.not_sent)
        if self.not_sent_from is not None and self.not_sent_from < self.consumed:
            text += "; not sent: %d-%d" % (self.not_sent_from, self.consumed - 1)
        if self.not_sent_from is not None:
            text += " (nothing sent from item %d on)" % self.not_sent_from
        return text

    def __repr__(self) -> str:
        return "<AddOutcome %s>" % self


def with_outcome(exc: BaseException, outcome: AddOutcome) -> BaseException:
    """``exc`` as it leaves ``add_many``: same class, the outcome attached
    (and, for server and connection errors, said in the message)."""
    if isinstance(exc, RedsetError):  # input errors already name the item
        exc.outcome = outcome  # type: ignore[attr-defined]
        return exc
    try:
        new = type(exc)("%s [add_many: %s]" % (exc, outcome))
    except Exception:  # noqa: BLE001 - a class with another constructor: keep it as it is
        new = exc
    new.outcome = outcome  # type: ignore[attr-defined]
    if new is not exc:
        new.__cause__ = exc
    return new
