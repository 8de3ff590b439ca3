"""``redset bench``: redset against redis-py by hand and the raw-socket limit.

Runs the workloads and contenders of :mod:`redset._benchmark` (the same code
``benchmarks/test_bench.py`` runs under pytest-benchmark) on an embedded Valkey
by default, with the server pinned to CPU 0 and this process to CPU 1, and
prints the median items/s of ``--repeat`` rounds with its ratio to the limit
and to redis-py by hand. ``--json`` saves the run for ``benchmarks/render.py``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
from itertools import groupby
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from redset import _benchmark as bm

__all__ = ["main", "run", "format_table"]


def _csv(choices: Sequence[str]) -> Callable[[str], List[str]]:
    def parse(value: str) -> List[str]:
        names = [v.strip().lower() for v in value.split(",") if v.strip()]
        bad = [v for v in names if v not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                "unknown %s (choose from %s)" % (", ".join(bad) or "empty list", ",".join(choices))
            )
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``redset bench``'s options."""
    p = argparse.ArgumentParser(prog="redset bench", description=__doc__.splitlines()[0])
    p.add_argument("--url", help="server to use (default: start an embedded Valkey and pin it)")
    p.add_argument("--n", type=int, default=None, help="items per workload (default $REDSET_BENCH_N or 200000)")
    p.add_argument("--pop-n", type=int, default=None, help="items for POP, one round trip each (default N/10)")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds per contender; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds per contender first (default 1)")
    p.add_argument("--ops", type=_csv(tuple(bm.OPS)), default=list(bm.OPS), help="add,take,drain,pop")
    p.add_argument(
        "--workloads", type=_csv(bm.WORKLOADS), default=list(bm.WORKLOADS), help=",".join(bm.WORKLOADS)
    )
    p.add_argument(
        "--clients", type=_csv(bm.CLIENT_LIBS), default=["redis"],
        help="client libraries for redset's rows: redis (redis-py), valkey (valkey-py), or both (default redis)",
    )
    p.add_argument("--compare", metavar="OLD", help="print each row's change against a saved run (--json of an earlier run)")
    p.add_argument("--json", metavar="OUT", help="save the run (machine, versions, rounds) as JSON")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and this process to CPUs")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


class _Progress:
    """A rich progress bar on a terminal, else one line per round on stderr."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.bar: Any = None
        if not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(stderr=True)
            if console.is_terminal:
                self.bar = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TextColumn("rounds"),
                                    TimeElapsedColumn(), TextColumn("{task.description}"), console=console)
                self.task = self.bar.add_task("", total=total)
                self.bar.start()

    def step(self, what: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=what)
        elif not self.quiet:
            print("[%d/%d] %s" % (self.done, self.total, what), file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.console.print(line, highlight=False, markup=False)
        elif not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _measure_group(
    cases: List[bm.Case], repeat: int, warmup: int, progress: _Progress
) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Time the cases of one (workload, operation) round-robin, so drift on a
    shared machine hits every contender alike; return (seconds, client CPU
    seconds) per contender and round."""
    times: Dict[str, List[float]] = {case.contender: [] for case in cases}
    cpus: Dict[str, List[float]] = {case.contender: [] for case in cases}
    for round_no in range(warmup + repeat):
        for case in cases:
            elapsed = case.measure()
            if round_no >= warmup:
                times[case.contender].append(elapsed)
                cpus[case.contender].append(case.cpu_s)
            progress.step("%s %s %s" % (case.workload.name, case.op, case.contender))
    return times, cpus


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> Dict[str, Any]:
    """Run the comparison ``args`` describe and return the run as a dict.

    :raises redset._benchmark.BenchmarkError: when a contender's result is wrong.
    """
    n = bm.bench_n(args.n)
    n_pop = args.pop_n or bm.pop_n(n)
    if args.repeat < 1 or args.warmup < 0:
        raise ValueError("--repeat must be >= 1 and --warmup >= 0")
    triples = bm.plan(args.ops, args.workloads, args.clients)
    server = None
    pinning = []
    if args.url:
        from redset._cli import check_url

        url = args.url
        check_url(url).close()
        if not args.no_pin:
            pinning.append("server not pinned: external (--url)")
    else:
        from redset._cli import start_embedded

        server = start_embedded()
        url = server.url
        if not args.no_pin and server.proc is not None:
            pinning.append(bm.pin_server(server.proc.pid, 0))
    if not args.no_pin:
        pinning.append(bm.pin_client(1))
    pinned = "; ".join(pinning) or "not pinned (--no-pin)"
    progress = _Progress(len(triples) * (args.repeat + args.warmup), args.quiet)
    progress.write("redset bench: N=%d (POP: %d), %s" % (n, n_pop, pinned))
    results: List[Dict[str, Any]] = []
    skipped: List[Dict[str, str]] = []
    load_before = _load_average()
    round_trip: Optional[Dict[str, float]] = None
    try:
        version = bm.server_version(url)
        try:
            probe = bm.RawConnection(url)
        except bm.Unavailable:
            probe = None  # a TLS or unix-socket URL: no raw probe
        if probe is not None:
            try:
                round_trip = probe.round_trip()
            finally:
                probe.close()
        for workload_name, group in groupby(triples, key=lambda t: t[0]):
            for op, triples_op in groupby(group, key=lambda t: t[1]):
                count = n_pop if op == "pop" else n
                workload = bm.get_workload(workload_name, count)
                cases: List[bm.Case] = []
                try:
                    for _, _, contender in triples_op:
                        try:
                            cases.append(bm.make_case(contender, workload, op, url))
                        except bm.Unavailable as exc:
                            skipped.append({"workload": workload_name, "op": op, "contender": contender,
                                            "reason": str(exc)})
                            progress.write("skipped %s %s %s: %s" % (workload_name, op, contender, exc))
                            progress.step("%s skipped" % contender)
                    times, cpus = _measure_group(cases, args.repeat, args.warmup, progress)
                finally:
                    for case in cases:
                        case.close()
                for case in cases:
                    median = statistics.median(times[case.contender])
                    results.append({
                        "workload": workload_name,
                        "op": op,
                        "contender": case.contender,
                        "label": case.label,
                        "n": count,
                        "seconds": times[case.contender],
                        "median_s": median,
                        "items_per_s": count / median,
                        "cpu_s": cpus[case.contender],
                        "cpu_us_per_item": statistics.median(cpus[case.contender]) / count * 1e6,
                    })
            bm.get_workload.cache_clear()  # one workload's items in memory at a time
    finally:
        progress.close()
        if server is not None:
            server.stop()
    bm.add_ratios(results)
    machine = bm.machine_info(version, pinned)
    # Other work on the machine is the main source of noise: keep it on record.
    machine["load_average"] = {"before": load_before, "after": _load_average()}
    if round_trip is not None:
        machine["round_trip_us"] = round_trip
    return {
        "format": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m redset bench " + shlex.join(list(argv)),
        "n": n,
        "pop_n": n_pop,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "machine": machine,
        "results": results,
        "skipped": skipped,
    }


def format_table(run_data: Dict[str, Any]) -> str:
    """Return the plain-text table of a run: one block per workload and operation."""
    lines = bm.table_lines(run_data["results"])
    machine = run_data["machine"]
    lines.append("")
    lines.append("x twin: a leased-take row against the plain take loop of the same contender; a "
                 "redset.asyncio row against the same row run sync; a row via valkey-py against the "
                 "same row through redis-py")
    lines.append(
        "%s, %s cores; %s; %s; redis-py %s, hiredis %s; %s"
        % (machine["cpu"], machine["cores"], machine["python"], machine["server"],
           machine["redis-py"], machine["hiredis"], machine["pinning"])
    )
    rt = machine.get("round_trip_us")
    if rt:
        lines.append("a bare round trip (PING, raw socket): %.1f µs wall, %.1f µs client CPU"
                     % (rt["wall_us"], rt["cpu_us"]))
    return "\n".join(lines)


def compare_lines(old: Dict[str, Any], new: Dict[str, Any], old_name: str) -> List[str]:
    """Row by row: items/s and client CPU per item of ``new`` against ``old``."""
    before = {(r["workload"], r["op"], r["contender"]): r for r in old.get("results", [])}
    lines = ["", "against %s (%s):" % (old_name, old.get("created", "?"))]
    head = ("workload", "op", "contender", "items/s then", "now", "change", "cpu us/item then", "now")
    rows = []
    for r in new["results"]:
        was = before.get((r["workload"], r["op"], r["contender"]))
        if was is None:
            rows.append((r["workload"], r["op"], r["label"], "—", format(round(r["items_per_s"]), ","), "new",
                         "—", bm.cpu_text(r)))
            continue
        change = r["items_per_s"] / was["items_per_s"] - 1
        rows.append((r["workload"], r["op"], r["label"], format(round(was["items_per_s"]), ","),
                     format(round(r["items_per_s"]), ","), "%+.0f%%" % (change * 100), bm.cpu_text(was), bm.cpu_text(r)))
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        lines.append("  " + "  ".join(
            str(cell).ljust(w) if i < 3 else str(cell).rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    gone = sorted(set(before) - {(r["workload"], r["op"], r["contender"]) for r in new["results"]})
    if gone:
        lines.append("  %d rows of %s were not run now" % (len(gone), old_name))
    if old.get("n") != new.get("n"):
        lines.append("  (N was %s then, %s now: rates of short runs are noisier)" % (old.get("n"), new.get("n")))
    if old.get("machine", {}).get("cpu") != new.get("machine", {}).get("cpu"):
        lines.append("  (another machine: %s then)" % old.get("machine", {}).get("cpu", "?"))
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``redset bench``; returns the exit status."""
    from redset._cli import CommandError, run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def body() -> int:
        try:
            bm.bench_n(args.n)
        except ValueError as exc:
            raise CommandError(str(exc), 2) from None
        if args.repeat < 1 or args.warmup < 0 or (args.pop_n is not None and args.pop_n < 1):
            raise CommandError("--repeat and --pop-n must be >= 1, --warmup >= 0", 2)
        old = None
        if args.compare:
            try:
                with open(args.compare) as fh:
                    old = json.load(fh)
                old["results"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CommandError("--compare %s: not a saved run (%s)" % (args.compare, exc), 2) from None
        try:
            run_data = run(args, argv)
        except bm.BenchmarkError as exc:
            raise CommandError("wrong result, nothing reported: %s" % exc) from None
        print(format_table(run_data))
        if old is not None:
            print("\n".join(compare_lines(old, run_data, args.compare)))
        for skip in run_data["skipped"]:
            print("skipped %(contender)s on %(workload)s %(op)s: %(reason)s" % skip)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(run_data, fh, indent=1)
                fh.write("\n")
            print("saved %s" % args.json)
        return 0

    return run_command("redset bench", body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
