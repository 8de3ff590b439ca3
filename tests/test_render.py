"""The benchmark page is rendered from saved runs: the targets table shows
each run's verdicts side by side, and the machine table what a round trip
costs when the run recorded it."""
from __future__ import annotations

import copy
import json
import os

from benchmarks import render

RESULTS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "results")


def _load(name: str) -> dict:
    with open(os.path.join(RESULTS, name)) as fh:
        return json.load(fh)


def test_targets_of_two_machines_side_by_side():
    other = _load("2026-12-04e-n200000.json")
    this = copy.deepcopy(other)  # the same run, as if on another CPU with a faster leased loop
    this["machine"]["cpu"] = "Some Other CPU"
    for row in this["results"]:
        if row["workload"] == "w1" and row["op"] == "take" and row["contender"] == "redset-lease":
            row["items_per_s"] *= 1.5
    page = render.render(this, "this.json", [("other.json", other)], " --also other.json")
    # The page quotes the command that renders it, other sources included, in both places.
    assert page.count("python -m benchmarks.render this.json --also other.json") == 2
    assert "(the targets below are shown on 2 machines)" in page
    head = next(line for line in page.splitlines() if line.startswith("| target (W1"))
    assert this["machine"]["cpu"] in head and "other.json: " + other["machine"]["cpu"] in head
    lease = next(line for line in page.splitlines() if line.startswith("| leased `take(1000, lease=30)`"))
    cells = [c.strip() for c in lease.strip("|").split("|")]
    # goal, then (measured, verdict) for this run and for the other one
    assert cells[1] == ">= 0.35"
    ratios = []
    for data in (this, other):
        rows = {r["contender"]: r for r in data["results"] if r["workload"] == "w1" and r["op"] == "take"}
        ratios.append(rows["redset-lease"]["items_per_s"] / rows["redset"]["items_per_s"])
    assert cells[2:] == ["%.2f" % ratios[0], "met" if ratios[0] >= 0.35 else "**missed**",
                         "%.2f" % ratios[1], "met" if ratios[1] >= 0.35 else "**missed**"]


def test_round_trip_line_comes_from_the_run():
    data = _load("2026-12-04e-n200000.json")
    data["machine"]["round_trip_us"] = {"wall_us": 12.3, "cpu_us": 3.5}
    page = render.render(data, "run.json")
    assert "| round trip | 12.3 µs wall, 3.5 µs of client CPU per bare PING" in page
    del data["machine"]["round_trip_us"]
    assert "| round trip | not recorded |" in render.render(data, "run.json")
    # Without other runs: one pair of columns, and no paragraph about them.
    alone = render.render(data, "run.json")
    assert "Beside this run" not in alone and "shown on" not in alone
