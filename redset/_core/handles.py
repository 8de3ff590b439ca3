"""Lease handles: what a leased take hands out, shared by both facades.

The handles of one take share a :class:`LeaseBatch` (their set, token,
deadline and size), so a take builds one small object per item (the codec's
``PopReader`` builds them straight from the reply, ``LEASE_SLOTS``), and
an ack of the whole take marks the batch, not each handle.
"""
from __future__ import annotations

from typing import Any, List

__all__ = ["LeaseBatch", "LeaseBase"]


class LeaseBatch:
    """What the leases of one take share: their set, token, deadline and
    size. ``done`` is set when the whole batch was acked in one call."""

    __slots__ = ("owner", "token", "deadline", "n", "done", "again")

    def __init__(self, owner: Any, token: str, deadline: float, n: int) -> None:
        self.owner = owner
        self.token = token
        self.deadline = deadline
        self.n = n
        self.done = False
        #: The members of the batch delivered before (a deliveries entry to drop on ack).
        self.again: List[bytes] = []


class LeaseBase:
    """One leased item (see :class:`redset.leases.Lease`).

    The handles of one take share a :class:`LeaseBatch` (set, token,
    deadline): a take builds one object per item with five fields.
    """

    __slots__ = ("item", "score", "deliveries", "member", "_batch", "_settled")

    def __init__(self, owner: Any, member: bytes, item: Any, score: float, deliveries: int,
                 token: str, deadline: float) -> None:
        self._batch = LeaseBatch(owner, token, deadline, 1)
        self.member = member
        self.item = item
        self.score = score
        self.deliveries = deliveries
        self._settled = False

    @property
    def token(self) -> str:
        """The token of this lease (of its take, or of its own after a partial extend)."""
        return self._batch.token

    @property
    def deadline(self) -> float:
        """UNIX time at which the lease expires."""
        return self._batch.deadline

    @property
    def settled(self) -> bool:
        """True once this handle's lease was acked, nacked or released."""
        return self._settled or self._batch.done

    @settled.setter
    def settled(self, value: bool) -> None:
        self._settled = value

    @property
    def _set(self) -> Any:
        return self._batch.owner

    @property
    def _n(self) -> int:
        return self._batch.n

    def __repr__(self) -> str:
        return "<Lease item=%r deliveries=%d deadline=%.3f>" % (self.item, self.deliveries, self.deadline)
