"""Prometheus metrics of redset sets (the ``prometheus`` extra).

::

    from prometheus_client import REGISTRY, start_http_server
    from redset.prometheus import RedsetCollector

    REGISTRY.register(RedsetCollector(redis.Redis(), ["jobs:*", "mail"]))
    start_http_server(9108)

or, from a shell, ``redset metrics --url redis://... --port 9108 'jobs:*'``.

At each scrape the collector finds the sets whose names match its patterns
with ``SCAN ... MATCH ... TYPE zset`` (never ``KEYS``; on a cluster, on every
primary), reads each one's :meth:`~redset.SortedSet.stats` (one round trip
per set), and reports, labelled ``set="<name>"``:

=========================================  =========================================
metric (all gauges)                        value
=========================================  =========================================
``redset_items``                           items in the set
``redset_due_items``                       items that may be popped now
``redset_oldest_item_age_seconds``         age of the oldest due item (time-scored
                                           sets; 0 when none is due)
``redset_next_due_timestamp_seconds``      ScheduledSet: when the next item that is
                                           not due yet becomes due
``redset_in_flight_items``                 leased items not yet settled
``redset_oldest_lease_age_seconds``        age of the lease that expires first
``redset_dead_letter_items``               items in the dead-letter set
``redset_scrape_errors``                   sets whose figures could not be read
                                           at this scrape (unlabelled)
=========================================  =========================================

What a set's scores mean is not stored in Redis: say it with the pattern's
class (``{"jobs:*": ScheduledSet}``). Patterns given without a class (a
string or a list) guess it (:func:`redset.stats.guess_kind`): scores from
1e9 on are UNIX times (items in the future are not due yet), lower scores
are priorities. A :class:`~redset.SortedSet`'s scores are priorities, so it
has no age.
The keys a set owns beside itself (``...:inflight``, ``...:dead``,
``...:waiters``) are never reported as sets.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Type, Union

try:
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised by the packaging test
    raise ImportError(
        "redset.prometheus needs the prometheus-client package: pip install 'redset[prometheus]'"
    ) from exc

from redset.sets import ScheduledSet, SortedSet
from redset.stats import SetStats, find_set_names, guess_kind

__all__ = ["RedsetCollector", "find_sets", "METRICS"]

log = logging.getLogger("redset.prometheus")

#: (name, help, SetStats field) of every per-set gauge.
METRICS: Tuple[Tuple[str, str, str], ...] = (
    ("redset_items", "Items in the set.", "length"),
    ("redset_due_items", "Items that may be popped now.", "due"),
    ("redset_oldest_item_age_seconds", "Age of the oldest due item (0 when none is due).", "oldest_age"),
    ("redset_next_due_timestamp_seconds", "UNIX time at which the next not-yet-due item becomes due.",
     "next_due"),
    ("redset_in_flight_items", "Leased items not yet acked, nacked or reclaimed.", "in_flight"),
    ("redset_oldest_lease_age_seconds", "Age of the lease that expires first (0 when none).",
     "oldest_lease_age"),
    ("redset_dead_letter_items", "Items in the dead-letter set.", "dead"),
)

Patterns = Union[str, Iterable[str], Mapping[str, Optional[Type[SortedSet]]]]


def _pattern_classes(patterns: Patterns) -> List[Tuple[str, Optional[Type[SortedSet]]]]:
    if isinstance(patterns, str):
        return [(patterns, None)]
    if isinstance(patterns, Mapping):
        out = []
        for pattern, cls in patterns.items():
            if cls is not None and not (isinstance(cls, type) and issubclass(cls, SortedSet)):
                raise TypeError("the class for %r must be a redset set class, not %r" % (pattern, cls))
            out.append((str(pattern), cls))
        return out
    return [(str(p), None) for p in patterns]


def find_sets(client: Any, patterns: Patterns, count: int = 1000) -> Iterator[Tuple[str, Optional[Type[SortedSet]]]]:
    """``(name, class)`` of every sorted set matching ``patterns`` (see
    :func:`redset.stats.find_set_names`); a name matched by several patterns
    comes once, with the first pattern's class."""
    seen = set()
    for pattern, cls in _pattern_classes(patterns):
        for name in find_set_names(client, pattern, count):
            if name not in seen:
                seen.add(name)
                yield name, cls


class RedsetCollector(Collector):
    """A Prometheus collector reporting the figures of every set that
    matches ``patterns`` (a pattern, a list of them, or a dict pattern ->
    set class, or None to guess), read through ``client`` (a sync ``redis.Redis``,
    ``RedisCluster``, or valkey-py's twins)."""

    def __init__(self, client: Any, patterns: Patterns, *, serializer: Any = None, count: int = 1000) -> None:
        self.client = client
        self.patterns = _pattern_classes(patterns)  # checked now, not at the first scrape
        self.serializer = serializer
        self.count = count
        self._sets: Dict[Tuple[str, Optional[Type[SortedSet]]], SortedSet] = {}

    def stats(self) -> Tuple[List[SetStats], int]:
        """The figures of every matching set, and how many could not be read."""
        found: List[SetStats] = []
        errors = 0
        for name, cls in find_sets(self.client, dict(self.patterns), self.count):
            s = self._sets.get((name, cls))
            if s is None:
                s = self._sets[(name, cls)] = (cls or ScheduledSet)(self.client, name, serializer=self.serializer)
            try:
                found.append(s.stats() if cls is not None else guess_kind(s.stats()))
            except Exception as exc:  # noqa: BLE001 - one set's error must not hide the others
                errors += 1
                log.warning("could not read the figures of %s: %s", name, exc)
        return found, errors

    def collect(self) -> Iterator[Any]:
        """The gauges of every matching set (called by the registry at each scrape)."""
        found, errors = self.stats()
        for metric, help_text, field in METRICS:
            family = GaugeMetricFamily(metric, help_text, labels=["set"])
            for st in found:
                value: Optional[float] = getattr(st, field)
                if value is not None:
                    family.add_metric([st.name], float(value))
            yield family
        yield GaugeMetricFamily("redset_scrape_errors", "Sets whose figures could not be read at this scrape.",
                                value=errors)

    def describe(self) -> Iterator[Any]:
        """Nothing up front: the sets are found at each scrape."""
        return iter(())  # the sets are found at each scrape
