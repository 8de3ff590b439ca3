"""``redset demo``: producers and consumers in separate processes, checked end to end.

Producer processes ``add_many`` overlapping ranges of task ids into one
:class:`~redset.TimeSortedSet`, so the set's deduplication shows; consumer
processes then ``take`` batches until it is empty. The demo counts what was
produced, stored and consumed, reports the queue's lag the way a monitoring
job would (``time.time() - s.peek_score()``), schedules two items with a
:class:`~redset.ScheduledSet`, and exits non-zero if any task was lost or
consumed twice.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any, List, Optional, Sequence, Tuple

__all__ = ["main"]


def _open(url: str, name: str, cls: str = "TimeSortedSet") -> Any:
    import redis

    import redset
    from redset.serializers import JSONSerializer

    return getattr(redset, cls)(redis.Redis.from_url(url), name, serializer=JSONSerializer())


def produce(url: str, name: str, first: int, count: int) -> Tuple[int, int]:
    """Add tasks ``first .. first+count-1``; return (produced, newly stored)."""
    queue = _open(url, name)
    added = queue.add_many({"task": i, "kind": "fetch"} for i in range(first, first + count))
    return count, added


def consume(url: str, name: str, batch: int, work: float) -> Tuple[List[int], float]:
    """Take batches until the queue is empty, spending ``work`` seconds on each
    as a real consumer would; return the task ids and the largest lag seen
    (age of the oldest waiting task, in seconds)."""
    queue = _open(url, name)
    ids: List[int] = []
    max_lag = 0.0
    while True:
        oldest = queue.peek_score()
        if oldest is not None:
            max_lag = max(max_lag, time.time() - oldest)
        tasks = queue.take(batch)
        if not tasks:
            return ids, max_lag
        ids.extend(task["task"] for task in tasks)
        time.sleep(work)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``redset demo``'s options."""
    p = argparse.ArgumentParser(prog="redset demo", description=__doc__.splitlines()[0])
    p.add_argument("--url", help="server to use (default: start an embedded Valkey)")
    p.add_argument("--producers", type=int, default=3, help="producer processes (default 3)")
    p.add_argument("--consumers", type=int, default=3, help="consumer processes (default 3)")
    p.add_argument("--tasks", type=int, default=10_000, help="task ids per producer (default 10000)")
    p.add_argument("--batch", type=int, default=500, help="take() batch size (default 500)")
    p.add_argument("--work-ms", type=float, default=2.0, help="time a consumer spends per batch (default 2 ms)")
    return p


def _run(url: str, where: str, args: argparse.Namespace) -> bool:
    import redset

    tag = "redset-demo:%d:%d" % (os.getpid(), time.time_ns())
    qname, sname = tag + ":tasks", tag + ":later"
    queue, later = _open(url, qname), _open(url, sname, "ScheduledSet")
    # Each producer's range overlaps the next one's by half: every task id in
    # an overlap is added by two processes and must be stored once.
    stride = max(1, args.tasks // 2)
    ranges = [(p * stride, args.tasks) for p in range(args.producers)]
    unique = {i for first, count in ranges for i in range(first, first + count)}
    codec = "compiled" if redset.USE_EXTENSIONS else "pure-Python"
    print("redset %s (%s codec) on %s" % (redset.__version__, codec, where))
    ok = True
    context = multiprocessing.get_context("spawn")  # fresh clients, no inherited sockets
    try:
        with ProcessPoolExecutor(max(args.producers, args.consumers), mp_context=context) as pool:
            t0 = time.perf_counter()
            made = list(pool.map(produce, *zip(*[(url, qname, first, count) for first, count in ranges])))
            produced, added = sum(m[0] for m in made), sum(m[1] for m in made)
            stored = len(queue)
            print(
                "producers: %d processes x %s task ids, overlapping by half (%.2f s)"
                % (args.producers, format(args.tasks, ","), time.perf_counter() - t0)
            )
            print(
                "  produced %s   unique %s   stored %s   (duplicates collapsed: %s)"
                % tuple(format(v, ",") for v in (produced, len(unique), stored, produced - stored))
            )
            if stored != len(unique) or added != len(unique):
                print("  WRONG: stored %d, add_many reported %d new, expected %d" % (stored, added, len(unique)))
                ok = False
            oldest = queue.peek_score()
            lag = time.time() - oldest if oldest is not None else 0.0
            print("lag (TimeSortedSet): the oldest task has waited %.3f s" % lag)

            due = time.time() + 1.0
            later.add("reminder:1", score=due)
            later.add("reminder:2", score=due + 0.1)
            try:
                early = later.pop()
            except KeyError:
                early = None
            print(
                "scheduled: 2 items due in 1 s; now pop() -> %s, available() = %d, len() = %d"
                % ("KeyError" if early is None else repr(early), later.available(), len(later))
            )
            ok = ok and early is None

            t0 = time.perf_counter()
            taken = list(pool.map(consume, *zip(*[(url, qname, args.batch, args.work_ms / 1000)] * args.consumers)))
            ids = [i for got, _ in taken for i in got]
            counts = Counter(ids)
            duplicates = sum(c - 1 for c in counts.values())
            lost = len(unique - counts.keys())
            stray = len(counts.keys() - unique)
            print(
                "consumers: %d processes, take(%d) until empty, %g ms of work per batch (%.2f s)"
                % (args.consumers, args.batch, args.work_ms, time.perf_counter() - t0)
            )
            print(
                "  consumed %s (per consumer: %s); max lag seen %.3f s"
                % (format(len(ids), ","), " / ".join(format(len(g), ",") for g, _ in taken),
                   max(lag for _, lag in taken))
            )
            print("  duplicates-consumed=%d lost=%d left=%d" % (duplicates, lost, len(queue)))
            ok = ok and duplicates == 0 and lost == 0 and stray == 0 and len(queue) == 0

        time.sleep(max(0.0, due + 0.1 - time.time()))
        on_time = sorted(later.take(10))
        print("scheduled: after their time, take(10) -> %s" % on_time)
        ok = ok and on_time == ["reminder:1", "reminder:2"]
    finally:
        queue.clear()
        later.clear()
    return ok


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``redset demo``; returns 0 when nothing was lost or repeated."""
    from redset._cli import CommandError, check_url, run_command, start_embedded

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        if min(args.producers, args.consumers, args.tasks, args.batch) < 1 or args.work_ms < 0:
            raise CommandError("--producers, --consumers, --tasks and --batch must be >= 1, --work-ms >= 0", 2)
        server = None
        if args.url:
            check_url(args.url).close()
            url, where = args.url, args.url
        else:
            server = start_embedded()
            url, where = server.url, "%s (embedded, %s)" % (server.version, server.url)
        try:
            ok = _run(url, where, args)
        finally:
            if server is not None:
                server.stop()
        print("OK: nothing lost, nothing consumed twice" if ok else "FAILED")
        return 0 if ok else 1

    return run_command("redset demo", body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
