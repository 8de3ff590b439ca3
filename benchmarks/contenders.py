"""The contenders of /work/shared/BENCHMARKS.md, each one :class:`Case` per
(workload, operation): ``limit`` (pre-encoded RESP on a bare socket),
``redis-py`` / ``redis-py-resp2`` (redis-py with hiredis, by hand) and
``redset`` / ``redset-pure`` / ``redset-drain`` / ``redset-pure-drain``.

They live in :mod:`redset._benchmark`, shared with ``redset bench``.
"""
from __future__ import annotations

from redset._benchmark import (
    CONTENDERS,
    OPS,
    BenchmarkError,
    Case,
    Unavailable,
    add_ratios,
    contender_label,
    make_case,
    pin_client,
    pin_server,
    plan,
    table_lines,
    table_rows,
)

__all__ = [
    "CONTENDERS",
    "OPS",
    "BenchmarkError",
    "Case",
    "Unavailable",
    "add_ratios",
    "contender_label",
    "make_case",
    "pin_client",
    "pin_server",
    "plan",
    "table_lines",
    "table_rows",
]
