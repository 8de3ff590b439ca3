"""What happens to popped members that fail to deserialize."""
from __future__ import annotations

import logging
import time
from typing import Any, List, Tuple

from redset._core.calls import call
from redset._core.config import SetConfig
from redset._core.steps import Plan
from redset.exceptions import DeserializationError

__all__ = ["handle_failures", "Failures"]

log = logging.getLogger("redset.sets")

Failures = List[Tuple[bytes, BaseException]]


def handle_failures(cfg: SetConfig, items: List[Any], failures: Failures) -> Plan[None]:
    """Members that failed to load: dead-letter them, log them, raise if told to."""
    if cfg.dead_letter_key is not None:
        args: List[Any] = ["ZADD", cfg.dead_letter_key]
        now = time.time()
        for raw, _ in failures:
            args.extend((now, raw))
        yield from call(cfg._wire_impl, args)
    where = " (moved to %r)" % cfg.dead_letter_key if cfg.dead_letter_key else ""
    for raw, exc in failures:
        log.error("Could not deserialize %r popped from %s%s: %s: %s",
                  raw[:200], cfg.name, where, type(exc).__name__, exc)
    if cfg.on_decode_error == "raise":
        raise DeserializationError(
            "%d item(s) popped from %r could not be deserialized%s" % (len(failures), cfg.name, where),
            items, failures,
        ) from failures[0][1]
