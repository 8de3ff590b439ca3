"""What the server spends per item on a leased take loop (INFO commandstats).

Loads N W1 items, then consumes them with ``take(1000, lease=30)`` and
``ack_many`` per batch, with the server's command statistics reset just
before: each command's total µs divided by N is what the server spent on
it per item (a script's total includes the commands it called; those are
also listed on their own). The plain ``take(1000)`` loop is measured the same
way beside it. Run from the repository root::

    python -m benchmarks.lease_commandstats [--n 200000] [--url redis://...]

Without ``--url`` it starts the embedded Valkey, pinned to CPU 0, and pins
itself to CPU 1.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any, Dict, List, Optional

import redis

import redset
from redset._bench_report import pin_client, pin_server


def _consume(s: redset.SortedSet, leased: bool) -> int:
    n = 0
    while True:
        if leased:
            leases = s.take(1000, lease=30)
            s.ack_many(leases)
            got = len(leases)
        else:
            got = len(s.take(1000))
        n += got
        if got < 1000:
            return n


def measure(client: redis.Redis, n: int, leased: bool) -> Dict[str, Any]:
    """One loop over ``n`` items: items/s, client CPU and server µs per item per command."""
    s = redset.SortedSet(client, "bench:commandstats")
    s.clear()
    s.add_many(["task:%d" % i for i in range(n)], range(n))
    client.config_resetstat()
    cpu, start = time.process_time(), time.perf_counter()
    got = _consume(s, leased)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = client.info("commandstats")
    if got != n or len(s) or s.in_flight():
        raise AssertionError("consumed %d of %d; %d left, %d in flight" % (got, n, len(s), s.in_flight()))
    per_item = {name[len("cmdstat_"):]: v["usec"] / n for name, v in stats.items()
                if not name.startswith("cmdstat_config") and v["usec"] / n >= 0.001}
    return {"items_per_s": n / elapsed, "client_cpu_us": cpu / n * 1e6, "server_us": per_item}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--url", help="server to use (default: the embedded Valkey, pinned)")
    args = p.parse_args(argv)
    server = None
    if args.url:
        url = args.url
    else:
        from redset.testing import LocalServer

        server = LocalServer().start()
        url = server.url
        print(pin_server(server.proc.pid, 0))
        print(pin_client(1))
    try:
        client = redis.Redis.from_url(url)
        print("server:", client.info("server").get("valkey_version") or client.info("server")["redis_version"],
              "| load average: %.2f %.2f %.2f" % os.getloadavg())
        for leased in (False, True):
            r = measure(client, args.n, leased)
            what = "take(1000, lease=30) + ack_many" if leased else "take(1000)"
            print("\n%s: %.0f items/s, client CPU %.2f µs/item; server µs per item:"
                  % (what, r["items_per_s"], r["client_cpu_us"]))
            for name, us in sorted(r["server_us"].items(), key=lambda kv: -kv[1]):
                print("  %-22s %.3f" % (name, us))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
