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
