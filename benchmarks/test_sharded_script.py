"""Smoke run of ``python -m benchmarks.sharded`` (tiny, unpinned): it starts
its servers, measures every row, and saves a run that names every row."""
from __future__ import annotations

import json

from benchmarks import sharded


def test_sharded_benchmark_runs_every_row(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert sharded.main(["--n", "3000", "--repeat", "1", "--shards", "1,3", "--json", str(out), "--no-pin"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["servers"], r["shards"], r["op"]) for r in rows} == {
        (where, k, op) for where in ("1 primary", "3 primaries") for k in (1, 3) for op in ("add_many", "drain")}
    assert all(r["items_per_s"] > 0 and r["cpu_us_per_item"] >= 0 for r in rows)
    assert "3 primaries" in capsys.readouterr().out
