"""A distributed lock on one Redis key (``redset.locks.Lock``, as in 0.5.1).

1.0 keeps 0.5.1's constructor and :class:`~redset.exceptions.LockTimeout` but
not its mechanism: the lock is ``SET key token NX PX expires`` with a random
token, and releasing it deletes the key only while it still holds that token
(a compare-and-delete script), so a holder whose lock expired and was taken
over never deletes the new holder's lock.
"""
from __future__ import annotations

import os
import time
from typing import Any, Optional

from redis.exceptions import NoScriptError

from redset import scripts
from redset._checks import require_sync_client
from redset.exceptions import LockTimeout

__all__ = ["Lock"]

_RELEASE_SHA = scripts.sha1(scripts.RELEASE_LOCK)


class Lock:
    """Context manager holding a lock on ``key`` while its block runs.

    :param redis: a redis-py client (or anything with its ``set``/``evalsha``).
    :param key: the lock's key.
    :param expires: seconds after which the lock expires if its holder never
        releases it (it crashed); must be longer than the block takes.
        Default 20.
    :param timeout: seconds to wait for the lock before raising
        :class:`LockTimeout`; 0 means try once. Default 10.
    :param poll_interval: seconds between attempts. Default 0.2.
    """

    def __init__(
        self,
        redis: Any,
        key: str,
        expires: Optional[float] = None,
        timeout: Optional[float] = None,
        poll_interval: Optional[float] = None,
    ) -> None:
        require_sync_client(redis, "locks.Lock")
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

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout``.

        :raises LockTimeout: if another holder keeps it past the timeout.
        """
        token = os.urandom(16).hex().encode()
        px = max(1, int(self.expires * 1000))
        deadline = time.monotonic() + self.timeout
        while True:
            if self.redis.set(self.key, token, nx=True, px=px):
                self.token = token
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout("Timeout while waiting for lock '%s'" % self.key)
            time.sleep(min(self.poll_interval, remaining))

    def release(self) -> bool:
        """Release the lock if this holder still owns it.

        :returns: True if the key was deleted, False if the lock had expired
            (and was possibly taken by someone else, whose lock is left alone).
        """
        token, self.token = self.token, None
        if token is None:
            return False
        try:
            deleted = self.redis.evalsha(_RELEASE_SHA, 1, self.key, token)
        except NoScriptError:
            deleted = self.redis.eval(scripts.RELEASE_LOCK, 1, self.key, token)
        return bool(deleted)

    def locked(self) -> bool:
        """Whether some holder currently holds the lock."""
        return bool(self.redis.exists(self.key))

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.release()

