"""Several processes taking concurrently lose nothing and share nothing."""
from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import pytest
import redis

from redset import ScheduledSet, SortedSet, TimeSortedSet

N_ITEMS = int(os.environ.get("REDSET_MP_ITEMS", "100000"))
N_PROCS = 8

CLASSES = {"SortedSet": SortedSet, "TimeSortedSet": TimeSortedSet, "ScheduledSet": ScheduledSet}


def _consume(url: str, cls_name: str, wire_name: str, batch: int, out: "multiprocessing.Queue",
             ready: "multiprocessing.Queue", go: Any) -> None:
    import redset._wire

    client = redis.Redis.from_url(url)
    s = CLASSES[cls_name](client, "mp")
    s._wire = redset._wire.pure if wire_name == "py" else redset._wire.compiled
    client.ping()
    ready.put(os.getpid())
    go.wait(60)  # start together, so the takes really race
    got = []
    empty_streak = 0
    while empty_streak < 3:
        items = s.take(batch)
        if items:
            got.extend(items)
            empty_streak = 0
        else:
            empty_streak += 1
            time.sleep(0.01)
    out.put(got)


@pytest.mark.multiprocess
@pytest.mark.single_server
@pytest.mark.parametrize("cls_name", list(CLASSES))
def test_concurrent_takers_lose_none_and_share_none(server, r_any, impl, cls_name):
    cls = CLASSES[cls_name]
    s = cls(r_any, "mp")
    if cls is ScheduledSet:
        due = time.time() - 1
        scores = [due - i * 1e-6 for i in range(N_ITEMS)]
    else:
        scores = list(range(N_ITEMS))
    assert s.add_many(("task:%d" % i for i in range(N_ITEMS)), scores) == N_ITEMS
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Queue()
    go = ctx.Event()
    wire_name = "py" if impl.__name__.endswith("_py") else "c"
    procs = [
        ctx.Process(target=_consume, args=(server.url, cls_name, wire_name, 50 + 37 * k, out, ready, go))
        for k in range(N_PROCS)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    go.set()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    taken = [x for part in results for x in part]
    assert len(taken) == N_ITEMS, "lost %d" % (N_ITEMS - len(taken))
    assert len(set(taken)) == N_ITEMS, "shared %d" % (len(taken) - len(set(taken)))
    assert set(taken) == {"task:%d" % i for i in range(N_ITEMS)}
    assert sum(1 for part in results if part) >= 2  # the work was really shared
    assert len(s) == 0
