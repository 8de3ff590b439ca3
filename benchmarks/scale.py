"""Scale and overhead checks that the ratio table does not show.

1. ``add_many`` over a *generator* of 1,000,000 W2 items: peak RSS growth of
   the producer process (target: < 50 MB), measured in a fresh subprocess.
2. Cost per item at N = 200,000 and N = 1,000,000 for W1 ``add_many`` and
   ``drain(1000)`` (target: flat within 10%).
3. W2 with the stdlib ``json``: redset's ``add_many``/``drain`` time against
   the time ``json.dumps``/``json.loads`` alone take for the same items
   (target: within 1.15x).
4. ``pop()`` against a bare redis-py ``zpopmin`` round trip (target: within 1.1x).

Every figure is a median of ``--repeat`` runs measured in this one process
against one embedded server pinned to CPU 0 (client on CPU 1).

    python -m benchmarks.scale --json benchmarks/results/scale.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List

import redis

import redset
from redset._benchmark import pin_client, pin_server
from redset.serializers import JSONSerializer
from redset.testing import LocalServer


def w2(i: int) -> Dict[str, Any]:
    return {"task": i, "url": "https://example.com/page/%d" % i, "priority": i % 10}


def median_time(fn: Callable[[], Any], prepare: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        prepare()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_RSS_CHILD = r"""
import resource, sys, redis, redset
from redset.serializers import JSONSerializer
url, n = sys.argv[1], int(sys.argv[2])
r = redis.Redis.from_url(url)
r.delete("rss")
s = redset.SortedSet(r, "rss", serializer=JSONSerializer())
items = ({"task": i, "url": "https://example.com/page/%d" % i, "priority": i % 10} for i in range(n))
scores = (float(i) for i in range(n))
# Warm up imports, connection and codec before the baseline.
s.add_many(({"warm": i} for i in range(2000)), range(2000))
r.delete("rss")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
added = s.add_many(items, scores)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert added == n, added
assert r.zcard("rss") == n
r.delete("rss")
# Control: the same items held in a list, to show the measure is sensitive.
held = [{"task": i, "url": "https://example.com/page/%d" % i, "priority": i % 10} for i in range(n)]
control = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, control, len(held))
"""


def rss_growth(url: str, n: int) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, url, str(n)], check=True,
                         capture_output=True, text=True).stdout.split()
    before, after, control = int(out[0]), int(out[1]), int(out[2])
    return {"n": n, "peak_rss_before_kb": before, "peak_rss_after_kb": after,
            "growth_mb": (after - before) / 1024.0,
            "control_list_growth_mb": (control - after) / 1024.0}


def per_item_costs(r: redis.Redis, sizes: List[int], repeat: int) -> List[Dict[str, Any]]:
    rows = []
    s = redset.SortedSet(r, "scale")
    for n in sizes:
        members = ["task:%d" % i for i in range(n)]
        scores = list(range(n))
        add = median_time(lambda: s.add_many(members, scores), lambda: r.delete("scale"), repeat)
        assert r.zcard("scale") == n

        def drain() -> None:
            got = 0
            for batch in s.drain(1000):
                got += len(batch)
            assert got == n, got

        take = median_time(drain, lambda: (r.delete("scale"), s.add_many(members, scores)), repeat)
        rows.append({"n": n, "add_ns_per_item": add / n * 1e9, "drain_ns_per_item": take / n * 1e9})
    return rows


def stdlib_json_overhead(r: redis.Redis, n: int, repeat: int) -> Dict[str, Any]:
    items = [w2(i) for i in range(n)]
    scores = list(range(n))
    enc = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    blobs = [enc(x).encode() for x in items]
    dumps_alone = median_time(lambda: [enc(x).encode() for x in items], lambda: None, repeat)
    loads_alone = median_time(lambda: [json.loads(b) for b in blobs], lambda: None, repeat)
    s = redset.SortedSet(r, "scalejson", serializer=JSONSerializer(use_orjson=False))
    add = median_time(lambda: s.add_many(items, scores), lambda: r.delete("scalejson"), repeat)

    def drain() -> None:
        got = [x for batch in s.drain(1000) for x in batch]
        assert got == items

    take = median_time(drain, lambda: (r.delete("scalejson"), s.add_many(items, scores)), repeat)
    return {"n": n, "json_dumps_alone_s": dumps_alone, "add_many_s": add, "add_ratio": add / dumps_alone,
            "json_loads_alone_s": loads_alone, "drain_s": take, "drain_ratio": take / loads_alone}


def pop_overhead(r: redis.Redis, n: int, repeat: int) -> Dict[str, Any]:
    members = {"task:%d" % i: i for i in range(n)}
    s = redset.SortedSet(r, "scalepop")

    def fill() -> None:
        r.delete("scalepop")
        r.zadd("scalepop", members)

    def redset_pop() -> None:
        for _ in range(n):
            s.pop()

    def bare() -> None:
        for _ in range(n):
            r.zpopmin("scalepop")

    t_redset = median_time(redset_pop, fill, repeat)
    t_bare = median_time(bare, fill, repeat)
    return {"n": n, "redset_pop_us": t_redset / n * 1e6, "bare_zpopmin_us": t_bare / n * 1e6,
            "ratio": t_redset / t_bare}


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with LocalServer() as srv:
        pinning = "%s; %s" % (pin_server(srv.proc.pid), pin_client())
        r = redis.Redis.from_url(srv.url)
        result = {
            "redset_compiled": redset.USE_EXTENSIONS,
            "server": srv.version,
            "pinning": pinning,
            "load_average_before": list(os.getloadavg()),
            "rss": rss_growth(srv.url, args.large),
            "per_item": per_item_costs(r, [args.small, args.large], args.repeat),
            "stdlib_json": stdlib_json_overhead(r, args.small, args.repeat),
            "pop": pop_overhead(r, args.small // 10, args.repeat),
            "load_average_after": list(os.getloadavg()),
        }
    small, large = result["per_item"]
    print("server %s, compiled=%s, %s" % (result["server"], result["redset_compiled"], pinning))
    print("add_many of %d W2 items from a generator: peak RSS grew %.1f MB (target < 50; "
          "control: holding the same items in a list grows it %.0f MB)"
          % (result["rss"]["n"], result["rss"]["growth_mb"], result["rss"]["control_list_growth_mb"]))
    print("W1 add_many ns/item: %.0f at %d, %.0f at %d (x%.2f; target within 1.10)"
          % (small["add_ns_per_item"], small["n"], large["add_ns_per_item"], large["n"],
             large["add_ns_per_item"] / small["add_ns_per_item"]))
    print("W1 drain ns/item:    %.0f at %d, %.0f at %d (x%.2f; target within 1.10)"
          % (small["drain_ns_per_item"], small["n"], large["drain_ns_per_item"], large["n"],
             large["drain_ns_per_item"] / small["drain_ns_per_item"]))
    sj = result["stdlib_json"]
    print("W2 stdlib json: add_many %.3f s vs json.dumps alone %.3f s (x%.2f); drain %.3f s vs json.loads alone "
          "%.3f s (x%.2f); target within 1.15" % (sj["add_many_s"], sj["json_dumps_alone_s"], sj["add_ratio"],
                                                 sj["drain_s"], sj["json_loads_alone_s"], sj["drain_ratio"]))
    p = result["pop"]
    print("pop(): %.1f us vs bare redis-py zpopmin %.1f us (x%.2f; target within 1.10)"
          % (p["redset_pop_us"], p["bare_zpopmin_us"], p["ratio"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
