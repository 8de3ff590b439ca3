"""The README's quick start runs verbatim against the test server, on both
codecs, prints what its comments say, and leaves no key behind."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import redset._wire

README = Path(__file__).resolve().parent.parent / "README.md"


def code_block(heading: str) -> str:
    """The first python block after ``heading`` in the README."""
    text = README.read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's %s section has no python block" % heading
    return match.group(1)


def quick_start() -> str:
    return code_block("## Quick start")


def run_block(server, impl_module, code: str, db: int) -> list:
    """Run a README block against database ``db`` of the test server; return
    its output lines after checking it left no key behind."""
    url = server.url.rsplit("/", 1)[0] + "/%d" % db
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    env = dict(os.environ, REDIS_URL=url)
    env.pop("REDSET_NO_EXTENSIONS", None)
    if impl_module is redset._wire.pure:
        env["REDSET_NO_EXTENSIONS"] = "1"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert admin.keys("*") == []
        return out.stdout.splitlines()
    finally:
        admin.flushdb()
        admin.close()


def test_asyncio_example_runs_verbatim(server, impl_module):
    assert run_block(server, impl_module, code_block("## asyncio"), 11) == [
        "100 True", "50", "50", "working on job:x",
    ]


def test_quick_start_runs_verbatim(server, impl_module):
    assert run_block(server, impl_module, quick_start(), 10) == [
        "3 ['a', 'b']",
        "True",
        "500",
        "500",
        "0.0",
        "[] True",
        "working on task:1",
        "working on task:2",
    ]


def test_quick_start_default_url_matches_redset_server():
    # The block's fallback URL is where `redset server` listens by default.
    assert 'os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")' in quick_start()
    from redset._cli import _server_parser

    assert _server_parser().parse_args([]).port == 6379


@pytest.mark.parametrize("line", [
    '    python -m pip install -e ".[test]" && python -m pytest',
])
def test_readme_test_command_is_the_one_ci_runs(line):
    assert line in README.read_text().splitlines()
