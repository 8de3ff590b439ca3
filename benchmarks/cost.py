"""Cost gates that cannot flake: instructions per item of the hot paths.

``python -m benchmarks.cost`` runs each path of :mod:`benchmarks.cost_paths`
(compiled and pure-Python codec) under ``valgrind --tool=callgrind``, twice
(set up plus R runs, and set up alone), and divides the difference by the
items handled: instructions per item, which do not move with the machine's
load as timings do. It compares them with ``benchmarks/cost_baseline.json``
and exits 1, printing a table of every path, when one grew past the
tolerance (10% by default).

``python -m benchmarks.cost --record`` measures and rewrites the baseline, so
an intended change of cost shows up as a reviewed diff of that file.

Counts depend on the Python version (and a little on the compiler and
valgrind): the baseline holds one set per Python ``major.minor``, and a
version without one is an error that says how to record it.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BASELINE = os.path.join(HERE, "cost_baseline.json")
#: Runs of a path in the measured child (the other child runs it 0 times).
REPS = {"c": 20, "py": 4, "default": 20}
#: Driver paths run fewer times: each run is 20 round trips.
SERVER_REPS = {"c": 5, "py": 2, "default": 5}
TOLERANCE = 0.10

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _python_version() -> str:
    return "%d.%d" % sys.version_info[:2]


def _count(path: str, impl: str, reps: int, url: Optional[str]) -> Tuple[int, int]:
    """(instructions, items per run) of one child under callgrind."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, "-m", "benchmarks.cost_paths", path, impl, str(reps)]
    if url:
        cmd.append(url)
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError("%s (%s) failed under callgrind:\n%s%s" % (path, impl, done.stdout, done.stderr[-3000:]))
    return int(found[-1]), int(done.stdout.split()[-1])


def measure(path: str, impl: str, url: Optional[str]) -> float:
    """Instructions per item of ``path`` on codec ``impl``."""
    reps = (SERVER_REPS if url else REPS)[impl]
    base, _ = _count(path, impl, 0, url)
    total, items = _count(path, impl, reps, url)
    return (total - base) / (reps * items)


def _paths(only: Optional[List[str]]) -> List[Tuple[str, str, bool]]:
    from benchmarks.cost_paths import PATHS, SERVER_PATHS

    out = [(p, impl, False) for p in PATHS for impl in ("c", "py")]
    out += [(p, impl, True) for p in SERVER_PATHS for impl in ("c",)]
    # What a user gets without choosing: the compiled codec, unless a change
    # quietly sent the default through the pure one.
    out.append(("drain-sync-w1", "default", True))
    if only:
        out = [t for t in out if any(o in "%s/%s" % (t[0], t[1]) for o in only)]
    return out


def measure_all(only: Optional[List[str]], jobs: int) -> Dict[str, float]:
    """Instructions per item of every path, keyed ``"path/impl"``."""
    paths = _paths(only)
    server = None
    url = None
    if any(needs for _, _, needs in paths):
        from redset.testing import LocalServer

        server = LocalServer()
        server.start()
        url = server.url
    try:
        # Paths without a server side by side (each child is one process
        # counting its own instructions); the driver paths alone after,
        # so the server keeps a core to itself.
        results: Dict[str, float] = {}
        quiet = [(p, i) for p, i, needs in paths if not needs]
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {"%s/%s" % (p, i): pool.submit(measure, p, i, None) for p, i in quiet}
            for key, future in futures.items():
                results[key] = future.result()
        for p, i, needs in paths:
            if needs:
                results["%s/%s" % (p, i)] = measure(p, i, url)
        return results
    finally:
        if server is not None:
            server.stop()


def _tool_versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    try:
        out["valgrind"] = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        out["valgrind"] = "missing"
    try:
        import Cython

        out["cython"] = Cython.__version__
    except ImportError:
        out["cython"] = "missing"
    return out


def load_baseline(path: str = BASELINE) -> Dict[str, Any]:
    if not os.path.exists(path):
        return {"format": 1, "tolerance": TOLERANCE, "pythons": {}}
    with open(path) as fh:
        data: Dict[str, Any] = json.load(fh)
    return data


def compare(old: Dict[str, float], new: Dict[str, float], tolerance: float) -> Tuple[List[str], List[str]]:
    """(table lines, the keys that grew past ``tolerance``)."""
    width = max([len(k) for k in list(new) + list(old)] + [len("path/codec")])
    lines = ["%-*s  %12s  %12s  %8s" % (width, "path/codec", "baseline", "now", "change")]
    grown = []
    for key in sorted(new):
        before = old.get(key)
        if before is None:
            lines.append("%-*s  %12s  %12.1f  %8s" % (width, key, "—", new[key], "new"))
            continue
        change = new[key] / before - 1
        mark = ""
        if change > tolerance:
            grown.append(key)
            mark = "  <-- grew past %d%%" % round(tolerance * 100)
        lines.append("%-*s  %12.1f  %12.1f  %+7.1f%%%s" % (width, key, before, new[key], change * 100, mark))
    for key in sorted(set(old) - set(new)):
        lines.append("%-*s  %12.1f  %12s  %8s" % (width, key, old[key], "—", "gone"))
    return lines, grown


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.splitlines()[0])
    p.add_argument("--record", action="store_true", help="measure and rewrite the baseline for this Python")
    p.add_argument("--baseline", default=BASELINE, help="baseline file (default benchmarks/cost_baseline.json)")
    p.add_argument("--only", action="append", help="measure only paths whose 'path/codec' contains this")
    p.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="children at once")
    p.add_argument("--json", metavar="OUT", help="also save this measurement as JSON")
    args = p.parse_args(argv)
    if not shutil.which("valgrind"):
        print("benchmarks.cost: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    start = time.monotonic()
    new = measure_all(args.only, args.jobs)
    elapsed = time.monotonic() - start
    baseline = load_baseline(args.baseline)
    version = _python_version()
    tolerance = float(baseline.get("tolerance", TOLERANCE))
    entry = baseline["pythons"].get(version)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"python": version, "tools": _tool_versions(), "instructions_per_item": new}, fh, indent=1)
    if args.record:
        kept = dict(entry["instructions_per_item"]) if entry and args.only else {}
        kept.update({k: round(v, 1) for k, v in new.items()})
        baseline["pythons"][version] = {"tools": _tool_versions(), "instructions_per_item": kept}
        with open(args.baseline, "w") as fh:
            json.dump(baseline, fh, indent=1, sort_keys=True)
            fh.write("\n")
        before = entry["instructions_per_item"] if entry else {}
        lines, _ = compare({k: v for k, v in before.items() if k in new}, new, tolerance)
        print("\n".join(lines))
        print("recorded %d paths for Python %s in %s (%.0f s)" % (len(new), version, args.baseline, elapsed))
        return 0
    if entry is None:
        print("benchmarks.cost: no baseline for Python %s in %s; record one with "
              "`python -m benchmarks.cost --record` and commit it" % (version, args.baseline), file=sys.stderr)
        return 1
    old = entry["instructions_per_item"]
    if args.only:
        old = {k: v for k, v in old.items() if k in new}
    lines, grown = compare(old, new, tolerance)
    print("instructions per item (callgrind), Python %s, tolerance +%d%%:" % (version, round(tolerance * 100)))
    print("\n".join(lines))
    print("measured in %.0f s" % elapsed)
    if grown:
        print("FAIL: %s grew past the tolerance. If the change is intended, re-record the baseline "
              "(python -m benchmarks.cost --record) and commit it with the change." % ", ".join(grown))
        return 1
    print("OK: no path grew past the tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
