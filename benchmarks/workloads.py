"""The workloads of /work/shared/BENCHMARKS.md: W1 strings and W2 JSON-like dicts.

The generators live in :mod:`redset._benchmark` so that ``redset bench`` and
these pytest benchmarks run one implementation. ``python -m benchmarks.workloads``
prints the first items of each workload and the member bytes they are stored as.
"""
from __future__ import annotations

import argparse

from redset._benchmark import DEFAULT_N, WORKLOADS, Workload, bench_n, get_workload, make_items, pop_n

__all__ = ["DEFAULT_N", "WORKLOADS", "Workload", "bench_n", "get_workload", "make_items", "pop_n"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Show the first items of each workload.")
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args()
    for name in WORKLOADS:
        workload = get_workload(name, args.n)
        print(name)
        for i, (item, member) in enumerate(zip(workload.items, workload.members)):
            print("  score %d: %r -> %r" % (i, item, member))


if __name__ == "__main__":
    main()
