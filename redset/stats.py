"""What a set looks like from outside: :class:`SetStats` and :class:`InFlightItem`.

``s.stats()`` (every set class, sync and asyncio, sharded too) returns a
:class:`SetStats` in one round trip (one Lua script; a sharded set: one per
shard, at once). ``s.in_flight_items(n)`` lists leases in flight.

Which figures mean what, per class:

==================  ==================  ====================  ==========================
figure              SortedSet           TimeSortedSet         ScheduledSet
==================  ==================  ====================  ==========================
``length``          every item          every item            every item, due or not
``due``             = length            = length              items with score <= now
``oldest_age``      None (scores are    now - lowest score    now - lowest score, of due
                    priorities)         (0 when empty)        items only (0 if none due)
``next_due``        None                None                  lowest score > now, or None
==================  ==================  ====================  ==========================

``oldest_age`` never counts an item that is not due, so one item scheduled
far ahead cannot fire an alert.
"""
from __future__ import annotations

import re

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterator, List, Optional

__all__ = ["SetStats", "InFlightItem", "taken_at", "find_set_names", "guess_kind"]

#: Suffixes of the sorted sets a set owns beside itself (never reported as sets).
COMPANION_SUFFIXES = (":inflight", ":dead", ":waiters", ":deliveries")
#: A batch of leases in flight: ``...:lease:<hex ms>.<random hex>[.held]``.
_BATCH_KEY = re.compile(r":lease:[0-9a-f]+\.[0-9a-f]+(\.held)?$")


@dataclass(frozen=True)
class SetStats:
    """A set's figures at one moment (``s.stats()``).

    :ivar name: the set's name.
    :ivar length: items in the set (not counting leased ones).
    :ivar due: items that may be popped now (a ScheduledSet: score <= now;
        the other classes: every item).
    :ivar oldest_age: seconds the oldest *due* item has waited (TimeSortedSet:
        since it was added; ScheduledSet: since it became due); 0.0 when no
        item is due; None for a SortedSet, whose scores are not times.
    :ivar next_due: ScheduledSet: the UNIX time at which the next item that
        is not due yet becomes due (None if none); None for the other classes.
    :ivar in_flight: leased items not yet acked, nacked or reclaimed.
    :ivar oldest_lease_age: seconds since the lease that expires first was
        taken (with one lease duration for every consumer, the oldest lease;
        ``extend`` moves a lease back in that order); 0.0 when nothing is in
        flight.
    :ivar dead: items in the dead-letter set.
    :ivar time: the UNIX time the figures were computed for.
    :ivar lowest_score: the lowest score in the set, due or not (None if empty).
    """

    name: str
    length: int
    due: int
    oldest_age: Optional[float]
    next_due: Optional[float]
    in_flight: int
    oldest_lease_age: float
    dead: int
    time: float
    lowest_score: Optional[float] = None

    def as_dict(self) -> Dict[str, Any]:
        """The figures as a dict (JSON-ready)."""
        return asdict(self)


@dataclass(frozen=True)
class InFlightItem:
    """One leased item (``s.in_flight_items()``).

    :ivar item: the item, deserialized.
    :ivar score: the score it returns with on expiry or nack.
    :ivar deliveries: how many times it has been leased, this time included.
    :ivar deadline: UNIX time at which its lease expires.
    :ivar taken_at: UNIX time at which it was leased (None if unknown).
    """

    item: Any
    score: float
    deliveries: int
    deadline: float
    taken_at: Optional[float]


def taken_at(token: str) -> Optional[float]:
    """The UNIX time a lease token was made (tokens start with it, in hex
    milliseconds), or None for a token without one."""
    stamp, sep, _ = token.partition(".")
    if not sep:
        return None
    try:
        return int(stamp, 16) / 1000.0
    except ValueError:
        return None


#: Scores below this (2001-09-09 as a UNIX time) are read as priorities by
#: :func:`guess_kind`, not as times.
EARLIEST_TIME = 1e9


def guess_kind(st: SetStats) -> SetStats:
    """Figures read as a ScheduledSet's, made right for a set whose kind is
    not known (``redset stats``/``watch``, the Prometheus collector without a
    class): scores from :data:`EARLIEST_TIME` on are UNIX times (an item in
    the future is not due yet, as in a ScheduledSet; a TimeSortedSet's items
    are all due, so the figures are the same); lower scores are priorities,
    which have no age and no due time."""
    if st.lowest_score is not None and st.lowest_score < EARLIEST_TIME:
        return replace(st, due=st.length, oldest_age=None, next_due=None)
    return st


def combine(name: str, parts: List[SetStats]) -> SetStats:
    """The figures of a sharded set from those of its shards."""
    ages = [p.oldest_age for p in parts if p.oldest_age is not None]
    dues = [p.next_due for p in parts if p.next_due is not None]
    return SetStats(
        name=name,
        length=sum(p.length for p in parts),
        due=sum(p.due for p in parts),
        oldest_age=max(ages) if ages else (None if any(p.oldest_age is None for p in parts) else 0.0),
        next_due=min(dues) if dues else None,
        in_flight=sum(p.in_flight for p in parts),
        oldest_lease_age=max((p.oldest_lease_age for p in parts), default=0.0),
        dead=sum(p.dead for p in parts),
        time=max((p.time for p in parts), default=time.time()),
        lowest_score=min((p.lowest_score for p in parts if p.lowest_score is not None), default=None),
    )


def find_set_names(client: Any, pattern: str, count: int = 1000) -> Iterator[str]:
    """Names of the sorted sets matching ``pattern``, found with ``SCAN MATCH
    ... TYPE zset`` (on a cluster client: on every primary), leaving out the
    keys a set owns beside itself (``...:inflight``, ``...:dead``,
    ``...:waiters``, ``...:deliveries`` and the batches of leases in flight,
    ``...:lease:<token>``)."""
    for key in client.scan_iter(match=pattern, count=count, _type="zset"):
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if not name.endswith(COMPANION_SUFFIXES) and not _BATCH_KEY.search(name):
            yield name
