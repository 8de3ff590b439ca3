"""Plans of the lock: ``SET key token NX PX``, and compare-and-delete."""
from __future__ import annotations

import os
import time
from typing import Optional

from redset._codec import Codec

from redset import scripts
from redset._core.calls import call, script
from redset._core.steps import Plan, Sleep
from redset.exceptions import LockTimeout

__all__ = ["acquire", "release", "locked"]


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


