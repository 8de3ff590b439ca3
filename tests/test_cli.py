"""The command line: ``redset demo`` and ``redset bench`` run end to end."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redset", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0
    assert "bench" in out.stdout and "demo" in out.stdout


def test_demo_loses_nothing_and_repeats_nothing(server, r_any):
    out = run("demo", "--url", server.url, "--producers", "2", "--consumers", "2", "--tasks", "2000")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "lost=0" in out.stdout.replace(" ", "") or "lost 0" in out.stdout


@pytest.mark.parametrize("ops", ["add,drain", "take,pop"])
def test_bench_runs_and_checks_every_contender(server, r_any, tmp_path, ops):
    target = tmp_path / "run.json"
    out = run("bench", "--url", server.url, "--n", "3000", "--pop-n", "300", "--repeat", "1",
              "--warmup", "0", "--ops", ops, "--workloads", "w1,w2-orjson", "--json", str(target),
              "--no-pin", "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(target.read_text())
    assert data["results"], data
    for row in data["results"]:
        assert row.get("items_per_s", 0) > 0, row
