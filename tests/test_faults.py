"""Fault injection for reliable consumption: kills, stops, crashes, cuts, pauses, OOM.

Every test starts the faults it needs against real servers on 127.0.0.1 and
asserts exact counts. Each has a short version (default run) and, where the
counts matter, a long version marked ``slow`` (``-m slow`` runs them;
``-m "not slow"`` leaves them out).

1. leased consumers SIGKILLed and replaced: nothing lost, duplicates only
   among items the killed consumers held;
2. a consumer SIGSTOPped past its lease: its stale ack is rejected;
3. the server SIGKILLed and restarted on its AOF (fsync always) during
   add_many: no acknowledged add lost;
4. a proxy cuts pops between request and reply: every cut raises
   PopOutcomeUnknown and nothing is delivered twice (at most once), or
   everything is delivered and acked after the leases expire (leases);
5. CLIENT PAUSE WRITE / DEBUG SLEEP past the socket timeout during add_many,
   the batch re-sent by redset or by the caller: all items, no duplicates;
6. maxmemory with noeviction: rejected adds raise OOM and leave nothing,
   leased takes/acks/nacks keep working, and every accepted item is
   accounted for.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from types import ModuleType
from typing import Any, Dict, Iterator, List, Set

import pytest
import redis
import valkey.exceptions

from .conftest import client_kwargs
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

import redset._wire
from redset import SortedSet, scripts
from redset.exceptions import PopOutcomeUnknown
from redset.testing import LocalServer, find_server_binary, free_port

from . import workers
from .faultproxy import ReplyCuttingProxy

# A set raises the classes of the client library it talks through (redis-py
# or valkey-py, by the client_lib fixture): the checks below accept both.
NETWORK = (redis.ConnectionError, redis.TimeoutError, valkey.exceptions.ConnectionError,
           valkey.exceptions.TimeoutError)
RESPONSE = (redis.exceptions.ResponseError, valkey.exceptions.ResponseError)
OOM = (redis.exceptions.OutOfMemoryError, valkey.exceptions.OutOfMemoryError)

# Faults of one server, through proxies in front of it (the cluster's own
# faults, failovers and reshards, are in test_cluster.py).
pytestmark = [pytest.mark.timeout(900), pytest.mark.single_server]

SPAWN = multiprocessing.get_context("spawn")


def counts(short: int, long: int) -> Any:
    """Parametrize ``n``: the short count by default, the long one under ``slow``."""
    return pytest.mark.parametrize(
        "n", [pytest.param(short, id="short"), pytest.param(long, id="long", marks=pytest.mark.slow)]
    )


def wire_name(impl: ModuleType) -> str:
    return "py" if impl is redset._wire.pure else "c"


def unique_key(prefix: str) -> str:
    return "%s:%s" % (prefix, uuid.uuid4().hex[:10])


def binary_version(binary: str) -> tuple:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"v=(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def leftovers(client: redis.Redis, s: SortedSet) -> Dict[str, int]:
    main, inflight, leased, deliveries, dead = s._lease_keys
    return {
        "waiting": client.zcard(main),
        "in_flight": int(client.get(leased) or 0),
        "lease_batches": client.zcard(inflight),
        "batch_keys": len(client.keys(s._batch_prefix + "*")),
        "in_flight_index": client.scard(s._index_key),
        "delivery_counts": client.zcard(deliveries),
        "dead": client.zcard(dead),
    }


EMPTY = {"waiting": 0, "in_flight": 0, "lease_batches": 0, "batch_keys": 0, "in_flight_index": 0,
         "delivery_counts": 0, "dead": 0}


def crash(srv: LocalServer) -> None:
    """SIGKILL the server, keeping its workdir for a restart.

    (``LocalServer.kill`` leaves the stderr pipe of the process open: a
    ResourceWarning, an error under this suite's warning filter. Close it here.)
    """
    if srv.proc is not None and srv.proc.stderr is not None:
        srv.proc.stderr.close()
    srv.kill()


@pytest.fixture
def private_server() -> Iterator[Any]:
    """Start private servers (killed, paused or reconfigured by the test)."""
    started: List[LocalServer] = []

    def start(**kwargs: Any) -> LocalServer:
        srv = LocalServer(**kwargs)
        started.append(srv)
        return srv.start()

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


# -- 1. consumers SIGKILLed at random moments and replaced ------------------------------------


@pytest.mark.multiprocess
@counts(10_000, 100_000)
def test_killed_consumers_lose_nothing_and_repeat_only_what_they_held(server, impl, n):
    """4 leased consumer processes, 3 SIGKILLed at random moments and replaced."""
    lease, batch, kills = 2.5, 20, 3
    rng = random.Random(1000 + n)
    key = unique_key("faults:kill")
    client = redis.Redis.from_url(server.url)
    s = SortedSet(client, key, leased=True)
    items = ["job:%07d" % i for i in range(n)]
    assert s.add_many(items, range(n)) == n

    procs: Dict[int, Any] = {}
    readers: Dict[Any, int] = {}
    next_id = [0]

    def start() -> int:
        pid = next_id[0]
        next_id[0] += 1
        r_end, w_end = SPAWN.Pipe(duplex=False)
        p = SPAWN.Process(target=workers.leased_consumer,
                          args=(server.url, key, wire_name(impl), batch, lease, w_end), daemon=True)
        p.start()
        w_end.close()  # the worker holds the only write end: EOF when it dies
        procs[pid] = p
        readers[r_end] = pid
        return pid

    leased_by: Dict[bytes, List[int]] = {}  # item -> consumers it was delivered to, in order
    deliveries_seen: Dict[bytes, List[int]] = {}
    acked_by: Dict[bytes, List[int]] = {}
    stale: List[tuple] = []
    ended: Set[int] = set()
    acks = [0]

    def handle(pid: int, msg: bytes) -> None:
        kind, _, rest = msg.partition(b" ")
        if kind == b"L":
            for entry in rest.split(b" "):
                member, _, d = entry.rpartition(b":")
                leased_by.setdefault(member, []).append(pid)
                deliveries_seen.setdefault(member, []).append(int(d))
        elif kind == b"A":
            acked_by.setdefault(rest, []).append(pid)
            acks[0] += 1
        elif kind == b"S":
            stale.append((pid, rest))
        elif kind == b"E":
            ended.add(pid)

    def pump(timeout: float) -> None:
        for conn in multiprocessing.connection.wait(list(readers), timeout):
            try:
                handle(readers[conn], conn.recv_bytes())
            except EOFError:
                del readers[conn]
                conn.close()

    originals = [start() for _ in range(4)]
    victims = rng.sample(originals, kills)
    kill_at = sorted(rng.randrange(n // 10, (7 * n) // 10) for _ in range(kills))
    killed: Dict[int, int] = {}  # consumer id -> acks seen when it was killed
    deadline = time.monotonic() + 60 + n / 500
    while readers and time.monotonic() < deadline:
        pump(0.05)
        if len(killed) < kills and acks[0] >= kill_at[len(killed)]:
            victim = victims[len(killed)]
            time.sleep(rng.random() * 0.01)  # a random moment, not a message boundary
            os.kill(procs[victim].pid, signal.SIGKILL)
            procs[victim].join(10)
            killed[victim] = acks[0]
            start()  # the replacement
    for conn in list(readers):  # a timeout: do not leave workers behind
        readers.pop(conn).close()
    for p in procs.values():
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join(10)

    assert len(killed) == kills, "only %d kills happened (acks seen: %d)" % (len(killed), acks[0])
    for pid, p in procs.items():
        if pid in killed:
            assert p.exitcode == -signal.SIGKILL
        else:
            assert p.exitcode == 0 and pid in ended, "consumer %d exited with %s" % (pid, p.exitcode)

    all_items = {x.encode() for x in items}
    # What each killed consumer held: leased, and not confirmed acked by it.
    held_by_killed: Set[bytes] = set()
    for member, pids in leased_by.items():
        for pid in pids:
            if pid in killed and pid not in acked_by.get(member, []):
                held_by_killed.add(member)
    duplicates = {m for m, pids in leased_by.items() if len(pids) > 1}
    confirmed = {m for m, pids in acked_by.items()}
    double_acked = {m for m, pids in acked_by.items() if len(pids) > 1}
    lost = all_items - confirmed - held_by_killed

    print("\n[kill n=%d %s] deliveries=%d duplicates=%d held_by_killed=%d stale=%d kills_at=%s"
          % (n, wire_name(impl), sum(map(len, leased_by.values())), len(duplicates),
             len(held_by_killed), len(stale), sorted(killed.values())))
    assert set(leased_by) == all_items
    assert leftovers(client, s) == EMPTY  # every item left through an ack
    assert not lost, "%d items never acked: %r" % (len(lost), sorted(lost)[:5])
    assert not double_acked, "acked twice: %r" % sorted(double_acked)[:5]
    assert duplicates <= held_by_killed, "repeated but not held by a killed consumer: %r" % (
        sorted(duplicates - held_by_killed)[:5])
    for member in duplicates:
        # Every delivery before the last went to a consumer that was then killed.
        assert all(pid in killed for pid in leased_by[member][:-1]), (member, leased_by[member])
    for member, ds in deliveries_seen.items():
        assert ds == sorted(ds) and len(set(ds)) == len(ds), (member, ds)
    assert not [x for x in stale if x[0] not in killed], stale
    # The kills hit consumers holding leases: some items were delivered again.
    assert any(max(ds) > 1 for ds in deliveries_seen.values())
    client.close()


# -- 2. a consumer SIGSTOPped past its lease ------------------------------------------------


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % pid) as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.001)
    raise AssertionError("process %d did not stop" % pid)


@pytest.mark.multiprocess
@counts(10, 100)
def test_stopped_consumer_ack_after_its_lease_expired_is_rejected(server, impl, n):
    lease = 0.15
    key = unique_key("faults:stop")
    client = redis.Redis.from_url(server.url)
    s = SortedSet(client, key, leased=True)
    parent_end, child_end = SPAWN.Pipe()
    p = SPAWN.Process(target=workers.stale_acker, args=(server.url, key, wire_name(impl), child_end), daemon=True)
    p.start()
    child_end.close()
    rejected = 0
    try:
        assert parent_end.poll(60) and parent_end.recv() == ("ready",)
        for trial in range(n):
            item = "job:%d" % trial
            s.add(item, trial)
            parent_end.send(("take", lease, "ack"))
            assert parent_end.poll(30)
            took = parent_end.recv()
            assert took[:2] == ("took", item) and took[3] == 1, took
            deadline, token = took[2], took[4]
            os.kill(p.pid, signal.SIGSTOP)
            _wait_stopped(p.pid)
            time.sleep(max(0.0, deadline - time.time()) + 0.02)
            # Another consumer: its take reclaims the expired lease and re-leases the item.
            again = s.take(1, lease=30)
            assert [x.item for x in again] == [item]
            assert again[0].deliveries == 2 and again[0].token != token
            again[0].ack()
            parent_end.send(("finish",))
            os.kill(p.pid, signal.SIGCONT)
            assert parent_end.poll(30)
            outcome = parent_end.recv()
            assert outcome[0] == "stale", "trial %d: the stale ack was %r" % (trial, outcome)
            assert outcome[2] == token
            rejected += 1
            assert leftovers(client, s) == EMPTY
        print("\n[stop n=%d %s] stale acks rejected: %d of %d" % (n, wire_name(impl), rejected, n))
        assert rejected == n
        parent_end.send(("exit",))
        p.join(30)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.join(10)
        parent_end.close()
        client.close()


# -- 3. the server SIGKILLed and restarted on its AOF during add_many -------------------------


@pytest.mark.parametrize("leased", [False, True], ids=["plain", "leased"])
@counts(3, 20)
def test_server_killed_during_add_many_loses_no_acknowledged_add(private_server, impl, n, leased, tmp_path):
    rng = random.Random(3000 + n)
    workdir = str(tmp_path / "aof")
    os.makedirs(workdir)
    srv = private_server(workdir=workdir, port=free_port(),
                         extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    client = redis.Redis(port=srv.port, socket_timeout=5, socket_connect_timeout=1,
                         retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 3))
    s = SortedSet(client, "q", leased=leased, chunk_size=500)
    batch_size = 3000
    returned: List[int] = []
    raised: List[tuple] = []
    in_call = threading.Event()
    stop = threading.Event()
    errors: List[BaseException] = []

    def produce() -> None:
        b = 0
        try:
            while not stop.is_set():
                items = ["b%05d:%04d" % (b, j) for j in range(batch_size)]
                in_call.set()
                try:
                    s.add_many(items, [b * batch_size + j for j in range(batch_size)])
                except NETWORK as exc:
                    raised.append((b, type(exc).__name__))
                    time.sleep(0.02)
                else:
                    returned.append(b)
                finally:
                    in_call.clear()
                b += 1
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    mid_call = 0
    try:
        for _ in range(n):
            time.sleep(0.05 + rng.random() * 0.25)
            mid_call += in_call.is_set()
            crash(srv)
            time.sleep(rng.random() * 0.1)
            srv.start()
        # Let the producer finish a few calls against the last server.
        settled = len(returned)
        wait_until = time.monotonic() + 30
        while len(returned) < settled + 3 and time.monotonic() < wait_until and not errors:
            time.sleep(0.01)
    finally:
        stop.set()
        producer.join(60)
    assert not errors, errors
    assert not producer.is_alive()
    # One more crash after the last acknowledged call: it is on disk too.
    crash(srv)
    srv.start()
    check = redis.Redis(port=srv.port)
    present = set(check.zrange("q", 0, -1))
    missing = [(b, m) for b in returned for m in ("b%05d:%04d" % (b, j) for j in range(batch_size))
               if m.encode() not in present]
    print("\n[crash n=%d %s %s] calls returned=%d raised=%d kills=%d (mid-call %d) items present=%d"
          % (n, wire_name(impl), "leased" if leased else "plain", len(returned), len(raised), n,
             mid_call, len(present)))
    assert not missing, "%d acknowledged items lost, e.g. %r" % (len(missing), missing[:5])
    assert len(returned) >= 3
    assert mid_call >= 1
    # Nothing but whole items of this test's batches.
    assert all(re.fullmatch(rb"b\d{5}:\d{4}", m) for m in present)
    check.close()
    client.close()


# -- 4. pops cut between request and reply --------------------------------------------------


def _popped_members(reply: Any) -> List[bytes]:
    """Members in a ZPOPMIN reply (RESP2 flat pairs or RESP3 nested pairs)."""
    if isinstance(reply, Exception) or not reply:
        return []
    if isinstance(reply[0], list):
        return [pair[0] for pair in reply]
    return list(reply[0::2])


def _leased_members(replies: Any) -> List[bytes]:
    """Members staged by a leased take, from the replies to its pipeline
    (LEASE_STAGE, the ZRANGE of the batch)."""
    return _popped_members(replies[1])


@pytest.fixture
def cut_proxy(server) -> Iterator[ReplyCuttingProxy]:
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    proxy = ReplyCuttingProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()


@counts(50, 1000)
def test_cut_pops_at_most_once_raise_and_never_deliver_twice(server, impl, protocol, cut_proxy, n):
    rng = random.Random(4000 + n)
    key = unique_key("faults:cut")
    direct = redis.Redis.from_url(server.url)
    client = redis.Redis.from_url(cut_proxy.url, **client_kwargs(protocol))
    s = SortedSet(client, key)
    k = 3
    total = 3 * k * n + 10 * k
    items = {("m%07d" % i).encode() for i in range(total)}
    SortedSet(direct, key).add_many(sorted(items), range(total))
    cut_proxy.arm(b"ZPOPMIN", times=n, seed=n, p=0.5)
    delivered: List[bytes] = []
    raised = 0
    calls = 0
    while True:
        before = cut_proxy.cuts
        calls += 1
        try:
            got = [s.pop()] if rng.random() < 0.3 else s.take(rng.randint(1, 2 * k))
        except PopOutcomeUnknown as exc:
            assert isinstance(exc, redis.ConnectionError)
            assert cut_proxy.cuts == before + 1, "raised without a cut"
            raised += 1
            continue
        except KeyError:
            got = []
        assert cut_proxy.cuts == before, "a cut pop returned items (a silent re-send?)"
        if not got:
            break
        delivered.extend(x.encode() for x in got)
    unknown = [m for reply in cut_proxy.dropped for m in _popped_members(reply)]
    print("\n[cut-at-most-once n=%d %s resp%d] calls=%d cuts=%d raised=%d delivered=%d unknown=%d"
          % (n, wire_name(impl), protocol, calls, cut_proxy.cuts, raised, len(delivered), len(unknown)))
    assert cut_proxy.cuts == n and raised == n
    assert len(delivered) == len(set(delivered)), "an item was delivered twice"
    assert len(unknown) == len(set(unknown))
    assert not set(delivered) & set(unknown), "an item removed by a cut pop was delivered"
    assert set(delivered) | set(unknown) == items and len(delivered) + len(unknown) == total
    assert direct.zcard(key) == 0
    client.close()
    direct.close()


@counts(50, 1000)
def test_cut_leased_takes_lose_nothing_once_leases_expire(server, impl, protocol, cut_proxy, n):
    rng = random.Random(4500 + n)
    key = unique_key("faults:cutlease")
    direct = redis.Redis.from_url(server.url)
    client = redis.Redis.from_url(cut_proxy.url, **client_kwargs(protocol))
    s = SortedSet(client, key, leased=True)
    lease = 0.3
    k = 3
    total = 2 * k * n + 10 * k
    items = {("m%07d" % i).encode() for i in range(total)}
    SortedSet(direct, key, leased=True).add_many(sorted(items), range(total))
    direct.script_load(scripts.LEASE_STAGE)
    direct.script_load(scripts.LEASE_ACK)
    cut_proxy.arm(scripts.sha1(scripts.LEASE_STAGE).encode(), times=n, seed=n, p=0.5, replies=2)
    acked: Dict[bytes, int] = {}  # member -> deliveries at its ack
    raised = 0
    calls = 0
    deadline = time.monotonic() + 60 + n * 0.1
    while time.monotonic() < deadline:
        before = cut_proxy.cuts
        calls += 1
        try:
            got = s.take(rng.randint(1, 2 * k), lease=lease, timeout=0 if cut_proxy.cuts < n else 0.5)
        except PopOutcomeUnknown:
            assert cut_proxy.cuts == before + 1, "raised without a cut"
            raised += 1
            continue
        assert cut_proxy.cuts == before, "a cut take returned items"
        for x in got:
            x.ack()
            m = x.item.encode()
            assert m not in acked, "acked twice: %r" % m
            acked[m] = x.deliveries
        if not got and cut_proxy.cuts >= n and leftovers(direct, s)["in_flight"] == 0 \
                and direct.zcard(key) == 0:
            break
    cut_counts: Dict[bytes, int] = {}
    for reply in cut_proxy.dropped:
        for m in _leased_members(reply):
            cut_counts[m] = cut_counts.get(m, 0) + 1
    print("\n[cut-leased n=%d %s resp%d] calls=%d cuts=%d raised=%d acked=%d redelivered=%d"
          % (n, wire_name(impl), protocol, calls, cut_proxy.cuts, raised, len(acked),
             sum(1 for d in acked.values() if d > 1)))
    assert cut_proxy.cuts == n and raised == n
    assert set(acked) == items, "lost %d" % len(items - set(acked))
    assert leftovers(direct, s) == EMPTY
    # Each item was delivered once more than the number of cut takes that leased it.
    assert {m: d - 1 for m, d in acked.items() if d > 1} == cut_counts
    client.close()
    direct.close()


# -- 5. CLIENT PAUSE / DEBUG SLEEP past the socket timeout during add_many ------------------

FAULT_AT = 5000  # the input item at which the server stalls


@pytest.mark.parametrize("leased", [False, True], ids=["plain", "leased"])
@pytest.mark.parametrize("fault", ["pause-redset-retries", "pause-caller-resends", "debug-sleep"])
def test_stalled_server_during_add_many_then_resent_keeps_every_item_once(private_server, impl, fault, leased):
    binary = find_server_binary()
    version = binary_version(binary)
    extra = ["--enable-debug-command", "yes"] if version >= (7, 0) else []
    srv = private_server(extra_args=extra)
    timeout = 0.25
    client = redis.Redis(port=srv.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                         retry=Retry(NoBackoff(), 0))
    admin = redis.Redis(port=srv.port)
    n = 20_000
    s = SortedSet(client, "q", leased=leased, chunk_size=1000)
    items = ["item:%06d" % i for i in range(n)]
    scores = list(range(n))
    stall = {"pause-redset-retries": 0.4, "pause-caller-resends": 1.5, "debug-sleep": 0.8}[fault]
    s.add("warm", -1)  # connect, load scripts
    admin.zrem("q", "warm")
    connections_before = int(admin.info("stats")["total_connections_received"])
    sleeper: List[threading.Thread] = []

    def stall_server() -> None:
        if fault == "debug-sleep":
            t = threading.Thread(target=lambda: redis.Redis(port=srv.port).execute_command(
                "DEBUG", "SLEEP", stall), daemon=True)
            t.start()
            sleeper.append(t)
            time.sleep(0.05)  # the server is asleep now
        else:
            admin.execute_command("CLIENT", "PAUSE", int(stall * 1000), "WRITE")

    def feed() -> Iterator[str]:
        for i, item in enumerate(items):
            if i == FAULT_AT:
                stall_server()
            yield item

    attempts = 0
    started = time.monotonic()
    outcomes: List[str] = []
    while True:
        attempts += 1
        try:
            s.add_many(feed() if attempts == 1 else items, scores)
        except NETWORK as exc:
            outcomes.append(type(exc).__name__)
            assert time.monotonic() - started < 20
            time.sleep(0.1)
            continue  # the caller re-sends the whole batch
        outcomes.append("ok")
        break
    for t in sleeper:
        t.join(10)
    elapsed = time.monotonic() - started
    reconnects = int(admin.info("stats")["total_connections_received"]) - connections_before
    got = admin.zrange("q", 0, -1, withscores=True)
    print("\n[stall %s %s %s] calls=%s reconnects=%d elapsed=%.2fs members=%d"
          % (fault, "leased" if leased else "plain", wire_name(impl), outcomes, reconnects, elapsed, len(got)))
    assert elapsed >= stall - 0.1  # the stall really held the batch up
    assert reconnects >= 1  # ... past the socket timeout: the connection was dropped and re-made
    if fault == "pause-redset-retries":
        assert outcomes == ["ok"]  # redset's own re-send went through
    if fault == "pause-caller-resends":
        assert outcomes[0] in ("TimeoutError", "ConnectionError") and outcomes[-1] == "ok"
    assert len(got) == n, "%d members for %d items" % (len(got), n)
    assert [(m.decode(), sc) for m, sc in got] == [(it, float(sc)) for it, sc in zip(items, scores)]
    # Consumed once each: nothing was queued twice.
    drained = [x for batch in SortedSet(admin, "q").drain(5000) for x in batch]
    assert len(drained) == n and len(set(drained)) == n
    if leased:
        assert leftovers(admin, s) == EMPTY
    client.close()
    admin.close()


# -- 6. maxmemory with noeviction -----------------------------------------------------------


def _is_oom(exc: BaseException) -> bool:
    """The server's OOM error: redis-py maps ``-OOM ...`` to OutOfMemoryError
    (stripping the prefix); an older server wraps it in a script error."""
    if isinstance(exc, OOM):
        return True
    text = str(exc)
    return isinstance(exc, RESPONSE) and ("OOM" in text or "maxmemory" in text)


@counts(3, 12)
def test_out_of_memory_rejects_adds_whole_and_leases_keep_working(private_server, impl, n):
    srv = private_server(extra_args=["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"])
    rng = random.Random(6000 + n)
    client = redis.Redis(port=srv.port)
    s = SortedSet(client, "q", leased=True, max_deliveries=3, chunk_size=200)
    main, inflight, _, _, dead_key = s._lease_keys
    pad = "x" * 120
    accepted: Set[str] = set()
    acked: Set[str] = set()
    dead: Set[str] = set()
    held: Dict[str, Any] = {}  # in flight at the end of a phase
    rejected_calls = 0
    phase = 0
    counter = [0]
    stats = {"takes": 0, "acks": 0, "nacks": 0, "phases_accepting": 0}

    def fresh(k: int) -> List[str]:
        out = ["it:%07d:%s" % (counter[0] + j, pad) for j in range(k)]
        counter[0] += k
        return out

    def absent(batch: List[str]) -> bool:
        pipe = client.pipeline(transaction=False)
        for m in batch:
            pipe.zscore(main, m)
            pipe.sismember(s._index_key, m)
        return not any(pipe.execute())

    def produce(size: int) -> bool:
        """One add (size 1) or add_many call; True if accepted, False if refused."""
        nonlocal rejected_calls
        batch = fresh(size)
        try:
            if size == 1:
                s.add(batch[0], counter[0])
            else:
                s.add_many(batch, [counter[0] + j for j in range(size)])
        except RESPONSE as exc:
            assert _is_oom(exc), "not an OOM error: %r" % exc
            rejected_calls += 1
            assert absent(batch), (
                "phase %d: add of %d item(s) raised %r but its items are in the set"
                % (phase, size, str(exc)[:60]))
            return False
        accepted.update(batch)
        return True

    for phase in range(n):
        # Produce until three calls in a row are refused, the last a single
        # add (a big batch can be refused while small writes still fit).
        streak = 0
        accepted_before = len(accepted)
        for _ in range(20_000):
            if streak >= 3:
                if produce(1):
                    streak = 0
                    continue
                break
            if produce(1 if rng.random() < 0.3 else rng.randint(5, 200)):
                streak = 0
            else:
                streak += 1
        else:
            raise AssertionError("the server never refused an add")
        stats["phases_accepting"] += len(accepted) > accepted_before
        # Refusing writes: leased takes, acks and nacks keep working.
        to_free = max(50, (client.zcard(main) * 2) // 3)
        freed = 0
        first = True
        while freed < to_free:
            leases = s.take(40, lease=60)
            assert leases, "a leased take returned nothing while %d items wait" % client.zcard(main)
            stats["takes"] += 1
            if first:
                # Right after adds were refused, the take (a write: items move
                # in flight, the lease is recorded) applied whole. Whether the
                # server is still over its limit is the server's business (it
                # frees client buffers on its own), so it is not asserted.
                pipe = client.pipeline(transaction=False)
                for x in leases:
                    pipe.zscore(s._batch_prefix + x.token, x.member)
                    pipe.zscore(main, x.member)
                replies = pipe.execute()
                assert all(v is not None for v in replies[0::2]), "a leased item is not in flight"
                assert all(v is None for v in replies[1::2]), "a leased item is still in the set"
                first = False
            for x in sorted(leases, key=lambda _: rng.random()):
                roll = rng.random()
                if roll < 0.35:
                    stats["nacks"] += 1
                    if not x.nack():
                        dead.add(x.item)  # max_deliveries reached
                elif roll < 0.9:
                    x.ack()
                    acked.add(x.item)
                    stats["acks"] += 1
                    freed += 1
                else:
                    held[x.item] = x  # stays in flight
        # Settle half of the leases held over from earlier rounds.
        for item in list(held)[: len(held) // 2]:
            held.pop(item).ack()
            acked.add(item)

    pending = {m.decode() for m in client.zrange(main, 0, -1)}
    in_flight = {m.decode() for t in client.zrange(inflight, 0, -1)
                 for m in client.zrange(s._batch_prefix + t.decode(), 0, -1)}
    dead_now = {m.decode() for m in client.zrange(dead_key, 0, -1)}
    print("\n[oom n=%d %s] accepted=%d rejected_calls=%d acked=%d pending=%d in_flight=%d dead=%d %s"
          % (n, wire_name(impl), len(accepted), rejected_calls, len(acked), len(pending),
             len(in_flight), len(dead_now), stats))
    assert rejected_calls >= 3 * n
    assert stats["phases_accepting"] == n  # acking freed memory for more adds each time
    assert dead_now == dead and set(held) == in_flight
    assert len(accepted) == len(acked) + len(pending) + len(in_flight) + len(dead_now)
    assert accepted == acked | pending | in_flight | dead_now
    assert s.in_flight() == len(in_flight) and s.dead_count() == len(dead_now)
    client.close()


@pytest.mark.parametrize("kind", ["leased-add", "leased-add_many", "scheduled-add"])
def test_add_refused_for_oom_at_the_limit_left_nothing(private_server, impl, kind):
    """Sweep maxmemory across the point where one add stops fitting.

    Every add either returns (its items are there) or raises OOM (they are
    not). Adds that also signal blocked consumers (leased sets, ScheduledSet)
    push the wake list after the items went in; that LPUSH can be the command
    the server refuses, and the add raises OOM although it was applied.
    """
    from redset import ScheduledSet

    srv = private_server(extra_args=["--maxmemory-policy", "noeviction"])
    client = redis.Redis(port=srv.port)
    if kind == "scheduled-add":
        s: SortedSet = ScheduledSet(client, "q")
    else:
        s = SortedSet(client, "q", leased=True)
    s.add_many(["warm:%d" % i for i in range(200)], range(200))
    outcomes: Dict[tuple, List[int]] = {}
    for delta in range(-200, 1400, 2):
        client.config_set("maxmemory", 0)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + delta)
        batch = ["d%+05d:%s" % (delta, "y" * 200)] if kind != "leased-add_many" else [
            "d%+05d:%d:%s" % (delta, j, "y" * 40) for j in range(4)]
        try:
            if kind == "leased-add_many":
                s.add_many(batch, range(len(batch)))
            else:
                s.add(batch[0], 1)
            raised = ""
        except RESPONSE as exc:
            assert _is_oom(exc), exc
            raised = "OOM"
        present = sum(client.zscore("q", m) is not None for m in batch)
        outcomes.setdefault((raised, present), []).append(delta)
    client.config_set("maxmemory", 0)
    summary = {k: len(v) for k, v in outcomes.items()}
    print("\n[oom-edge %s %s] (raised, present) -> count: %s" % (kind, wire_name(impl), summary))
    assert ("OOM", 0) in outcomes and ("", len(batch)) in outcomes  # the sweep crossed the limit
    applied_but_raised = {k: v for k, v in outcomes.items() if k[0] == "OOM" and k[1] > 0}
    assert not applied_but_raised, (
        "add raised OOM but its items were applied at maxmemory = used + %r bytes" % applied_but_raised)


# -- the script cache lost while a script call is retried -----------------------------------


@pytest.mark.parametrize("op", ["add", "add_many", "ack"])
def test_script_cache_lost_during_retried_script_call(server, impl, cut_proxy, op):
    """The server loses its script cache (a restart, a failover, SCRIPT FLUSH)
    while redset re-sends a script call after a connection error.

    The sequence the crash test above hits at random: EVALSHA answers
    NOSCRIPT, redset loads the script and re-sends; that EVALSHA runs, the
    server restarts before its reply arrives (here: the proxy drops the
    reply and the script cache is flushed), and redset's re-send gets
    NOSCRIPT again. The retry must go through (the call is idempotent: ZADD
    NX / a settle that already happened) or raise a connection error, never
    a NoScriptError for a transient condition.
    """
    key = unique_key("faults:noscript")
    direct = redis.Redis.from_url(server.url)
    client = redis.Redis.from_url(cut_proxy.url)
    s = SortedSet(client, key, leased=True)
    if op == "ack":
        s.add_many(["a", "b"], [1, 2])
        leases = s.take(2, lease=30)
        script = scripts.LEASE_ACK
    else:
        script = scripts.ADD_UNLESS_INFLIGHT
    direct.script_flush()
    # Match 1: the EVALSHA that answers NOSCRIPT; match 2: the one re-sent after SCRIPT LOAD.
    cut_proxy.arm(scripts.sha1(script).encode(), times=1, every=2, on_cut=lambda reply: direct.script_flush())
    outcome = "ok"
    try:
        if op == "add":
            s.add("x", 1)
        elif op == "add_many":
            s.add_many(["x", "y"], [1, 2])
        else:
            leases[0].ack()
    except NETWORK:
        outcome = "connection error"
    except RESPONSE as exc:
        outcome = "%s: %s" % (type(exc).__name__, exc)
    print("\n[noscript %s %s] cuts=%d outcome=%s" % (op, wire_name(impl), cut_proxy.cuts, outcome))
    assert cut_proxy.cuts == 1
    if op == "ack":
        assert direct.zscore(s._batch_prefix + leases[0].token, "a") is None  # the ack was applied
    else:
        assert direct.zcard(key) == (1 if op == "add" else 2)  # the add was applied
    assert outcome in ("ok", "connection error"), outcome
    client.close()
    direct.close()
