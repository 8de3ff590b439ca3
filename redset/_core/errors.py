"""Server errors that say which key and which operation they are about."""
from __future__ import annotations

import copy
from typing import Any, Optional, Sequence, Tuple, TypeVar


from redset import scripts

__all__ = ["name_of", "named_error"]

E = TypeVar("E", bound=BaseException)


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def name_of(args: Sequence[Any], label: Optional[str] = None) -> Tuple[str, str]:
    """``(operation, key)`` of a command: ``("ZADD", "jobs")``; for a script
    call its name in :mod:`redset.scripts` (``"LEASE_TAKE"``), not its SHA."""
    op = _text(args[0]).upper()
    if op in ("EVALSHA", "EVAL"):
        if label is None and len(args) > 1:
            label = scripts.name_of_sha(_text(args[1]))
        key = _text(args[3]) if len(args) > 3 else ""
        return (label or op), key
    return (label or op), (_text(args[1]) if len(args) > 1 else "")


def named_error(reply: E, args: Sequence[Any], label: Optional[str] = None) -> E:
    """The server's error reply in its own class (the client library's), its words first, then
    the operation and the key: ``WRONGTYPE ... (ZADD on 'jobs')``."""
    op, key = name_of(args, label)
    text = "%s (%s on %r)" % (reply, op, key)
    try:
        error = type(reply)(text)
    except Exception:  # a class that parses its message (MovedError: "slot host:port")
        error = copy.copy(reply)
        error.args = (text,)
        if hasattr(error, "message"):
            error.message = text
    error.__cause__ = reply
    return error
