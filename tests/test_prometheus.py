"""``redset.prometheus.RedsetCollector`` against a real server (and cluster):
the figures of three kinds of set, named by Prometheus conventions, found
by SCAN (never KEYS), companions left out."""
from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import redset
from redset.prometheus import METRICS, RedsetCollector

from .topo import is_cluster, node_of


def scrape(collector: RedsetCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    out: dict = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        for sample in family.samples:
            out[(sample.name, sample.labels.get("set"))] = sample.value
    return out


def commandstats(r, key) -> dict:
    info = node_of(r, key).info("commandstats")
    return {k: v["calls"] for k, v in info.items()}


def test_three_kinds_of_set(r):
    now = time.time()
    prio = redset.SortedSet(r, "jobs:prio")
    prio.add_many(["a", "b", "c"], [3, 1, 2])
    fifo = redset.TimeSortedSet(r, "jobs:fifo", max_deliveries=1)
    fifo.add_many(["x", "y"], [now - 42, now - 1])
    fifo.take(1, lease=60)
    sched = redset.ScheduledSet(r, "jobs:sched")
    sched.add_many(["due", "later"], [now - 7, now + 300])
    r.set("jobs:not-a-set", "x")
    if not is_cluster(r):
        for key in ("jobs:prio", "jobs:fifo", "jobs:sched"):
            node_of(r, key).config_resetstat()
    collector = RedsetCollector(r, {"jobs:prio": redset.SortedSet, "jobs:fifo": redset.TimeSortedSet,
                                    "jobs:sched": redset.ScheduledSet})
    got = scrape(collector)
    assert got[("redset_items", "jobs:prio")] == 3
    assert ("redset_oldest_item_age_seconds", "jobs:prio") not in got  # priorities have no age
    assert got[("redset_items", "jobs:fifo")] == 1 and got[("redset_in_flight_items", "jobs:fifo")] == 1
    assert 0.5 < got[("redset_oldest_item_age_seconds", "jobs:fifo")] < 10  # "y": the leased "x" is not waiting
    assert 0 <= got[("redset_oldest_lease_age_seconds", "jobs:fifo")] < 10
    assert got[("redset_items", "jobs:sched")] == 2 and got[("redset_due_items", "jobs:sched")] == 1
    assert 6.5 < got[("redset_oldest_item_age_seconds", "jobs:sched")] < 15
    assert abs(got[("redset_next_due_timestamp_seconds", "jobs:sched")] - (now + 300)) < 0.01
    assert got[("redset_dead_letter_items", "jobs:sched")] == 0
    assert got[("redset_scrape_errors", None)] == 0
    # the sets' own keys are not sets; nothing else was found
    names = {name for (_, name) in got if name}
    assert names == {"jobs:prio", "jobs:fifo", "jobs:sched"}
    for metric, _, _ in METRICS:
        assert metric.startswith("redset_") and not metric.endswith("_total")
    if not is_cluster(r):
        calls = commandstats(r, "jobs:prio")
        assert calls.get("cmdstat_scan", 0) >= 3 and "cmdstat_keys" not in calls


def test_patterns_and_default_class(r):
    now = time.time()
    redset.TimeSortedSet(r, "mail").add_many(["m"], [now - 3])
    redset.TimeSortedSet(r, "queue:1").add("q")
    got = scrape(RedsetCollector(r, ["mail", "queue:*", "nothing:*"]))
    assert {name for (_, name) in got if name} == {"mail", "queue:1"}
    assert 2.5 < got[("redset_oldest_item_age_seconds", "mail")] < 10


def test_bad_class_is_refused_at_once(r):
    with pytest.raises(TypeError, match="set class"):
        RedsetCollector(r, {"x": dict})


def test_guessed_kinds(r):
    now = time.time()
    redset.SortedSet(r, "prio").add_many(["a", "b"], [0, 5])
    redset.ScheduledSet(r, "sched").add_many(["due", "later"], [now - 4, now + 60])
    got = scrape(RedsetCollector(r, "*"))
    assert ("redset_oldest_item_age_seconds", "prio") not in got and got[("redset_due_items", "prio")] == 2
    assert got[("redset_due_items", "sched")] == 1 and 3.5 < got[("redset_oldest_item_age_seconds", "sched")] < 10
    assert abs(got[("redset_next_due_timestamp_seconds", "sched")] - (now + 60)) < 0.01
