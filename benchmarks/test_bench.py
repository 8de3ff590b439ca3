"""pytest-benchmark over contender x workload x operation.

Each round is prepared outside the clock (the key emptied or pre-loaded) and
checked after it (count, order, nothing repeated, what the server holds): a
wrong result fails the benchmark instead of reporting a number.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List

import pytest

from benchmarks.contenders import OPS, Unavailable, make_case, plan
from benchmarks.workloads import WORKLOADS, get_workload, pop_n

# redset's rows through both client libraries (valkey-py ones skip if it is missing).
CASES = plan(list(OPS), list(WORKLOADS), ("redis", "valkey"))


@pytest.mark.parametrize(("workload_name", "op", "contender"), CASES, ids=["-".join(c) for c in CASES])
def test_bench(
    benchmark: Any,
    bench_url: str,
    bench_count: int,
    bench_rounds: int,
    bench_results: List[Dict[str, Any]],
    workload_name: str,
    op: str,
    contender: str,
) -> None:
    n = pop_n(bench_count) if op == "pop" else bench_count
    workload = get_workload(workload_name, n)
    try:
        case = make_case(contender, workload, op, bench_url)
    except Unavailable as exc:
        pytest.skip(str(exc))
    benchmark.group = "%s %s (N=%d)" % (op.upper(), workload_name, n)
    benchmark.extra_info.update(contender=contender, label=case.label, n=n)
    pending: List[Any] = []
    cpus: List[float] = []

    def timed() -> None:
        cpu = time.process_time()
        result = case.run()
        cpus.append(time.process_time() - cpu)
        pending.append(result)

    try:
        benchmark.pedantic(
            timed,
            setup=case.prepare,
            teardown=lambda: case.check(pending.pop()),
            rounds=bench_rounds,
            warmup_rounds=1,
        )
        if pending:  # --benchmark-disable runs once and skips the teardown
            case.check(pending.pop())
    finally:
        case.close()
    if benchmark.stats is None:  # --benchmark-disable: ran once, checked, nothing to report
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["items_per_s"] = n / median
    bench_results.append({
        "workload": workload_name, "op": op, "contender": contender, "label": case.label,
        "n": n, "median_s": median, "items_per_s": n / median,
        # The warmup round is the first.
        "cpu_us_per_item": statistics.median(cpus[1:] or cpus) / n * 1e6,
    })
