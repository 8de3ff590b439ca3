"""Plans of the lock: ``SET key token NX PX``, and compare-and-delete."""
from __future__ import annotations

import os
import time
from typing import Any, Optional

from redset import scripts
from redset._codec import Codec
from redset._core.calls import call, script
from redset._core.steps import Plan, Sleep
from redset.exceptions import LockTimeout

__all__ = ["LockConfig", "acquire", "release", "locked"]


class LockConfig:
    """What the sync and asyncio ``Lock`` share: checked arguments and the
    token of the current holder (the facades run the plans below)."""

    def __init__(self, redis: Any, key: str, expires: Optional[float] = None,
                 timeout: Optional[float] = None, poll_interval: Optional[float] = None) -> None:
        self.redis = redis
        self.key = key
        self.expires = 20 if expires is None else expires
        self.timeout = 10 if timeout is None else timeout
        self.poll_interval = 0.2 if poll_interval is None else poll_interval
        if self.expires <= 0:
            raise ValueError("expires must be positive, got %r" % (expires,))
        if self.timeout < 0:
            raise ValueError("timeout must be >= 0, got %r" % (timeout,))
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive, got %r" % (poll_interval,))
        self.token: Optional[bytes] = None


def acquire(wire: Codec, key: str, expires: float, timeout: float, poll_interval: float) -> Plan[bytes]:
    """Take the lock, polling up to ``timeout``; return the token it holds.

    :raises LockTimeout: if another holder keeps it past the timeout.
    """
    token = os.urandom(16).hex().encode()
    px = max(1, int(expires * 1000))
    deadline = time.monotonic() + timeout
    while True:
        if (yield from call(wire, ("SET", key, token, "NX", "PX", px))):
            return token
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout("Timeout while waiting for lock '%s'" % key)
        yield Sleep(min(poll_interval, remaining))


def release(wire: Codec, key: str, token: Optional[bytes]) -> Plan[bool]:
    """Delete the lock key only if it still holds ``token``."""
    if token is None:
        return False
    return bool((yield from script(wire, scripts.RELEASE_LOCK, (key,), (token,))))


def locked(wire: Codec, key: str) -> Plan[bool]:
    """Whether some holder currently holds the lock."""
    return bool((yield from call(wire, ("EXISTS", key))))


