"""Argument checks shared by the public classes, run before anything is sent."""
from __future__ import annotations

import inspect
import numbers
from typing import Any

__all__ = ["check_count", "require_sync_client"]


def check_count(value: Any, name: str) -> int:
    """Check a count argument: an integer, not a str, float or bool."""
    if type(value) is int:  # the common case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError("%s must be an int, got %s %r" % (name, type(value).__name__, value))
    return int(value)


def require_sync_client(client: Any, cls_name: str) -> None:
    """Refuse an asyncio client before anything is sent.

    Its methods return coroutines: a sync set would drop them unawaited and
    lose the writes.
    """
    execute = getattr(client, "execute_command", None)
    if execute is not None and (inspect.iscoroutinefunction(execute)
                                or inspect.iscoroutinefunction(getattr(execute, "__func__", None))):
        raise TypeError(
            "redset.%s needs a synchronous client, but %s.%s is an asyncio client (its commands "
            "return coroutines, which this class would never await); use redset.asyncio.%s, "
            "which takes the same arguments and whose methods are coroutines"
            % (cls_name, type(client).__module__, type(client).__qualname__, cls_name))
