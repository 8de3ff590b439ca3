"""Labels, ratios and tables of a benchmark run, CPU pinning and the machine's
description. See :mod:`redset._benchmark`."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any, Dict, List, Optional, Tuple

from redset._bench_core import VALKEY_SUFFIX, WORKLOAD_TITLES

def contender_label(contender: str, op: str) -> str:
    """Human name of a contender for one operation."""
    if contender == "limit":
        return "limit: raw socket, pre-encoded RESP"
    if contender.startswith("redis-py"):
        resp = "RESP2" if contender.endswith("resp2") else "RESP3"
        how = {"add": "pipelined zadd", "take": "pipelined zpopmin", "pop": "zpopmin loop"}[op]
        client = "redis.asyncio" if contender.endswith("async") else "redis-py"
        return "%s + hiredis by hand, %s (%s)" % (client, how, resp)
    impl = "pure Python" if "pure" in contender else "compiled"
    if contender.replace(VALKEY_SUFFIX, "").endswith("drain"):
        call = "drain(1000)"
    elif contender.replace(VALKEY_SUFFIX, "").endswith("lease"):
        call = "take(1000, lease=30) + ack_many() loop"
    else:
        call = {"add": "add_many()", "take": "take(1000) loop", "pop": "pop() loop"}[op]
    api = "redset.asyncio" if "-async" in contender else "redset"
    via = " via valkey-py" if contender.endswith(VALKEY_SUFFIX) else ""
    return "%s %s, %s%s" % (api, impl, call, via)


def add_ratios(results: List[Dict[str, Any]]) -> None:
    """Set ``ratio_limit`` and ``ratio_redis_py`` on each result (None if absent)."""
    rate = {(r["workload"], r["op"], r["contender"]): r["items_per_s"] for r in results}
    for r in results:
        limit = rate.get((r["workload"], r["op"], "limit"))
        by_hand = rate.get((r["workload"], r["op"], "redis-py"))
        r["ratio_limit"] = r["items_per_s"] / limit if limit else None
        r["ratio_redis_py"] = r["items_per_s"] / by_hand if by_hand else None
        # An asyncio contender against its sync twin in the same group.
        twin = rate.get((r["workload"], r["op"], r["contender"].replace("-async", ""))) \
            if "-async" in r["contender"] else None
        r["ratio_sync"] = r["items_per_s"] / twin if twin else None
        # A contender run through valkey-py against the same through redis-py.
        twin = rate.get((r["workload"], r["op"], r["contender"][:-len(VALKEY_SUFFIX)])) \
            if r["contender"].endswith(VALKEY_SUFFIX) else None
        r["ratio_client"] = r["items_per_s"] / twin if twin else None
        # A leased take loop against the plain take loop of the same contender.
        base = r["contender"].replace(VALKEY_SUFFIX, "")
        twin = rate.get((r["workload"], r["op"], r["contender"].replace("-lease", ""))) \
            if base.endswith("-lease") else None
        r["ratio_plain"] = r["items_per_s"] / twin if twin else None


def _ratio(value: Optional[float]) -> str:
    return "—" if value is None else "%.2f" % value


def _twin_ratio(r: Dict[str, Any]) -> str:
    twin = r.get("ratio_plain")
    if twin is None:
        twin = r.get("ratio_client")
    if twin is None:
        twin = r.get("ratio_sync")
    return "" if twin is None else _ratio(twin)


def cpu_text(r: Dict[str, Any]) -> str:
    """A row's client CPU µs per item, or "—" when the run did not record it."""
    cpu = r.get("cpu_us_per_item")
    return "—" if cpu is None else "%.2f" % cpu


def table_rows(results: List[Dict[str, Any]]) -> List[Tuple[str, List[Tuple[str, str, str, str, str, str]]]]:
    """Group results by workload and operation into titled rows of strings:
    (contender, items/s, ratio to the limit, ratio to redis-py by hand, and
    its twin: for a contender run through valkey-py its ratio to the same
    run through redis-py, for an asyncio contender its ratio to the same code
    run sync, else ""; and the client's CPU µs per item, user + system)."""
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["workload"], r["op"]), []).append(r)
    out = []
    for (workload, op), rows in groups.items():
        title = "%s · %s · N = %s" % (WORKLOAD_TITLES.get(workload, workload), op.upper(), format(rows[0]["n"], ","))
        out.append((
            title,
            [
                (r["label"], format(round(r["items_per_s"]), ","), _ratio(r["ratio_limit"]),
                 _ratio(r["ratio_redis_py"]), _twin_ratio(r), cpu_text(r))
                for r in rows
            ],
        ))
    return out


def table_lines(results: List[Dict[str, Any]]) -> List[str]:
    """The plain-text table of :func:`table_rows` (``redset bench``, pytest summary)."""
    lines: List[str] = []
    head = ("contender", "items/s", "x limit", "x redis-py", "x twin", "cpu us/item")
    for title, rows in table_rows(results):
        width = max(len(head[0]), *(len(r[0]) for r in rows))
        lines += ["", title]
        lines += [("  %-*s  %12s  %8s  %10s  %6s  %11s" % (width, *row)).rstrip() for row in [head, *rows]]
    return lines


# --------------------------------------------------------------------------
# Pinning and the machine


def server_version(url: str) -> str:
    """Return ``"valkey 8.1.8"`` or ``"redis 7.2.4"`` for the server at ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    if "valkey_version" in info:
        return "valkey %s" % info["valkey_version"]
    return "redis %s" % info.get("redis_version", "?")


def pin_server(pid: int, cpu: int = 0) -> str:
    """Pin every thread of process ``pid`` to ``cpu``; return how, or why not."""
    if (os.cpu_count() or 1) < 2:
        return "server not pinned: one CPU"
    if shutil.which("taskset"):
        done = subprocess.run(
            ["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, text=True
        )
        if done.returncode == 0:
            return "server pinned to CPU %d (taskset -a)" % cpu
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            os.sched_setaffinity(int(tid), {cpu})
    except (OSError, AttributeError) as exc:
        return "server not pinned: %s" % exc
    return "server pinned to CPU %d (sched_setaffinity)" % cpu


def pin_client(cpu: int = 1) -> str:
    """Pin this process to ``cpu``; return how, or why not."""
    if (os.cpu_count() or 1) < 2:
        return "client not pinned: one CPU"
    try:
        os.sched_setaffinity(0, {cpu})
    except (OSError, AttributeError) as exc:
        return "client not pinned: %s" % exc
    return "client pinned to CPU %d (sched_setaffinity)" % cpu


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _source_commit() -> Optional[str]:
    """The git commit redset was imported from ("+dirty" with local changes), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info(server: str, pinning: str) -> Dict[str, Any]:
    """Describe the machine, the versions and the pinning of a run."""
    try:
        from redset import _wire

        extensions: Optional[bool] = bool(_wire.USE_EXTENSIONS)
        compiled_built = _wire.compiled is not None
    except ImportError:
        extensions, compiled_built = None, False
    try:
        import redset

        redset_version = getattr(redset, "__version__", None) or _version("redset")
    except ImportError:
        redset_version = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "redis-py": _version("redis"),
        "hiredis": _version("hiredis"),
        "orjson": _version("orjson"),
        "msgpack": _version("msgpack"),
        "redset": redset_version,
        "redset_commit": _source_commit(),
        "redset_extensions_default": extensions,
        "redset_compiled_built": compiled_built,
        "server": server,
        "pinning": pinning,
    }
