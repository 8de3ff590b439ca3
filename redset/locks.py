"""A distributed lock on one Redis key (``redset.locks.Lock``, as in 0.5.1).

1.0 keeps 0.5.1's constructor and :class:`~redset.exceptions.LockTimeout` but
not its mechanism: the lock is ``SET key token NX PX expires`` with a random
token, and releasing it deletes the key only while it still holds that token
(a compare-and-delete script), so a holder whose lock expired and was taken
over never deletes the new holder's lock.
"""
from __future__ import annotations

from typing import Any, Optional

from redset import _wire
from redset._checks import require_sync_client
from redset._core import locking
from redset._io.sync import make_driver
from redset.exceptions import LockTimeout

__all__ = ["Lock", "LockTimeout"]

class Lock(locking.LockConfig):
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
        super().__init__(redis, key, expires, timeout, poll_interval)

    @property
    def _io(self) -> Any:
        driver = self.__dict__.get("_driver")
        if driver is None or driver.client is not self.redis:
            driver = self.__dict__["_driver"] = make_driver(self.redis, _wire.impl, False, _key_bytes(self.key))
        return driver

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout``.

        :raises LockTimeout: if another holder keeps it past the timeout.
        """
        self.token = self._io.run(locking.acquire(self._io.wire, self.key, self.expires, self.timeout,
                                                  self.poll_interval))

    def release(self) -> bool:
        """Release the lock if this holder still owns it.

        :returns: True if the key was deleted, False if the lock had expired
            (and was possibly taken by someone else, whose lock is left alone).
        """
        token, self.token = self.token, None
        return bool(self._io.run(locking.release(self._io.wire, self.key, token)))

    def locked(self) -> bool:
        """Whether some holder currently holds the lock."""
        return bool(self._io.run(locking.locked(self._io.wire, self.key)))

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.release()



def _key_bytes(key: Any) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)
