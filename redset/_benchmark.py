"""Workloads and contenders shared by ``redset bench`` and ``benchmarks/``.

One implementation of what /work/shared/BENCHMARKS.md describes: the
workloads W1 (strings) and W2 (JSON-like dicts, three codecs), the operations
ADD, TAKE and POP, and the contenders that do the same work against the same
server:

``limit``
    The exact RESP bytes of the commands, encoded before the clock starts,
    written to a socket; the replies are read back in bulk into a buffer of the
    size a calibration run measured, never parsed into Python objects.
``redis-py`` / ``redis-py-resp2``
    redis-py with hiredis, written by hand the best way a user would.
``redset`` / ``redset-pure`` (and ``-drain``)
    redset's compiled and pure-Python codecs, side by side in one process.
``redis-py-async`` / ``redset-async`` (and ``-drain``)
    ``redis.asyncio`` by hand and ``redset.asyncio``, each on its own event loop.

Every measured round is ``prepare()`` (untimed: empty or pre-load the key),
``run()`` (timed) and ``check()`` (untimed: count, order, nothing repeated,
what the server holds), so no number is reported for a wrong result.

The code lives in :mod:`redset._bench_core` (workloads, the bare RESP
connection), :mod:`redset._bench_cases` (sync contenders),
:mod:`redset._bench_async` (asyncio contenders) and
:mod:`redset._bench_report` (labels, tables, pinning, the machine); this
module joins them and is what ``redset bench`` and ``benchmarks/`` import.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from redset._bench_async import ASYNC_CASES
from redset._bench_cases import (
    Case,
    LimitCase,
    RedisPyCase,
    RedisPyResp2Case,
    RedsetCase,
    RedsetDrainCase,
    RedsetLeaseCase,
    RedsetPureLeaseCase,
    RedsetPureCase,
    RedsetPureDrainCase,
)
from redset._bench_core import (
    CHUNK,
    CLIENT_LIBS,
    CONTENDERS,
    DEFAULT_N,
    OPS,
    PIPELINE_DEPTH,
    VALKEY_SUFFIX,
    WORKLOAD_TITLES,
    WORKLOADS,
    BenchmarkError,
    RawConnection,
    Unavailable,
    Workload,
    bench_n,
    get_workload,
    make_items,
    pop_n,
)
from redset._bench_report import (
    cpu_text,
    add_ratios,
    contender_label,
    machine_info,
    pin_client,
    pin_server,
    server_version,
    table_lines,
    table_rows,
)

__all__ = [
    "WORKLOAD_TITLES",
    "RawConnection",
    "CHUNK",
    "PIPELINE_DEPTH",
    "WORKLOADS",
    "OPS",
    "CLIENT_LIBS",
    "CONTENDERS",
    "VALKEY_SUFFIX",
    "cpu_text",
    "DEFAULT_N",
    "BenchmarkError",
    "Unavailable",
    "Workload",
    "Case",
    "bench_n",
    "pop_n",
    "make_items",
    "get_workload",
    "plan",
    "make_case",
    "contender_label",
    "add_ratios",
    "table_rows",
    "table_lines",
    "server_version",
    "pin_server",
    "pin_client",
    "machine_info",
]

_CASES: Dict[str, type] = {
    cls.contender: cls
    for cls in (
        LimitCase,
        RedisPyCase,
        RedisPyResp2Case,
        RedsetCase,
        RedsetPureCase,
        RedsetDrainCase,
        RedsetPureDrainCase,
        RedsetLeaseCase,
        RedsetPureLeaseCase,
        *ASYNC_CASES,
    )
}


def make_case(contender: str, workload: Workload, op: str, url: str) -> Case:
    """Open ``contender`` for ``op`` on ``workload`` against the server at ``url``.

    ``redset...-valkey`` is the redset contender of that name on a valkey-py
    client (``valkey.Valkey``, ``valkey.asyncio.Valkey``).

    :raises Unavailable: when the contender cannot run in this environment.
    """
    if contender.endswith(VALKEY_SUFFIX):
        base = _CASES[contender[:-len(VALKEY_SUFFIX)]]
        cls: Any = type(base.__name__ + "Valkey", (base,), {"contender": contender, "client_lib": "valkey"})
    else:
        cls = _CASES[contender]
    case: Case = cls(workload, op, url)
    return case


def plan(ops: Sequence[str], workloads: Sequence[str],
         clients: Sequence[str] = ("redis",)) -> List[Tuple[str, str, str]]:
    """Return (workload, operation, contender) triples for ``--ops``/``--workloads``.

    ``clients`` ("redis", "valkey") are the client libraries the redset
    contenders run through; the baselines always use redis-py.

    :raises ValueError: naming an unknown operation, workload or client library.
    """
    for lib in clients:
        if lib not in CLIENT_LIBS:
            raise ValueError("unknown client library %r (choose from %s)" % (lib, ", ".join(CLIENT_LIBS)))
    for op in ops:
        if op not in OPS:
            raise ValueError("unknown operation %r (choose from %s)" % (op, ", ".join(OPS)))
    for name in workloads:
        if name not in WORKLOADS:
            raise ValueError("unknown workload %r (choose from %s)" % (name, ", ".join(WORKLOADS)))
    out: List[Tuple[str, str, str]] = []
    for name in workloads:
        for flag in ops:
            op, contenders = OPS[flag]
            # POP is round-trip bound and costs the same per item whatever the
            # codec: one workload (the first asked for) shows it.
            if op == "pop" and name != workloads[0]:
                continue
            for contender in contenders:
                if contender.startswith("redset"):
                    variants = [contender + ("" if lib == "redis" else VALKEY_SUFFIX) for lib in clients]
                else:
                    variants = [contender]
                for variant in variants:
                    if (name, op, variant) not in out:
                        out.append((name, op, variant))
    return out
