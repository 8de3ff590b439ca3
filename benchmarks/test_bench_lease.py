"""What at-least-once costs: leased takes beside plain takes (W1).

Three consumers of the same N items in batches of 1,000, side by side in one
run against one server: ``take(1000)`` (at-most-once), ``take(1000,
lease=30)`` followed by ``ack_many`` (at-least-once), and ``drain(1000)``.
Each round pre-loads the key outside the clock and checks after it that every
item was consumed once, in order, and that nothing is left in flight.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List

import pytest
import redis

import redset

MODES = ["take", "lease+ack_many", "drain"]


def _consume(s: redset.SortedSet, mode: str) -> Callable[[], List[str]]:
    def take() -> List[str]:
        out: List[str] = []
        while True:
            batch = s.take(1000)
            if not batch:
                return out
            out.extend(batch)

    def leased() -> List[str]:
        out: List[str] = []
        while True:
            leases = s.take(1000, lease=30)
            if not leases:
                return out
            out.extend(x.item for x in leases)
            s.ack_many(leases)

    def drain() -> List[str]:
        return [x for batch in s.drain(1000) for x in batch]

    return {"take": take, "lease+ack_many": leased, "drain": drain}[mode]


@pytest.mark.parametrize("mode", MODES)
def test_bench_lease_cost(benchmark: Any, bench_url: str, bench_count: int, bench_rounds: int,
                          bench_results: List[Dict[str, Any]], mode: str) -> None:
    n = bench_count
    client = redis.Redis.from_url(bench_url)
    key = "bench:lease"
    s = redset.SortedSet(client, key)
    members = ["task:%d" % i for i in range(n)]
    scores = list(range(n))
    run = _consume(s, mode)
    got: List[List[str]] = []

    def setup() -> tuple:
        client.delete(key, *s._lease_keys[1:])
        s.add_many(members, scores)
        return (), {}

    def target() -> None:
        got.append(run())

    benchmark.group = "TAKE w1 with and without leases (N=%d)" % n
    benchmark.extra_info.update(contender="redset compiled" if redset.USE_EXTENSIONS else "redset pure",
                                label=mode, n=n)
    benchmark.pedantic(target, setup=setup, rounds=bench_rounds, iterations=1, warmup_rounds=0)
    for result in got:
        assert result == members
    assert s.in_flight() == 0 and len(s) == 0
    if benchmark.stats is not None:  # None under --benchmark-disable (ran once, checked)
        benchmark.extra_info["items_per_s"] = n / benchmark.stats.stats.median
    client.close()
