"""On a real cluster of our own: refusals followed, failovers and live
reshards under producer and consumer load, nothing lost or delivered twice.

The behaviour suite runs on a cluster too (``REDSET_TEST_TOPOLOGIES=cluster``,
see conftest); the tests here change the cluster (failovers, slot moves), so
they start their own, and count what they saw.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterator, List

import pytest
from redis.cluster import RedisCluster

from redset import SortedSet
from redset.testing import LocalCluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as rig:
        yield rig


@pytest.fixture
def rc(own_cluster: LocalCluster, impl: Any) -> Iterator[RedisCluster]:
    """A client of this module's cluster; sets built on it run on the codec,
    driver (sync or asyncio) and client library under test."""
    client = RedisCluster.from_url(own_cluster.url)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        client.close()


def routing(s: Any) -> Any:
    """The cluster driver of a set (inside the test's loop driver, for asyncio)."""
    return getattr(s._io, "inner", s._io)


def other_primary(r: RedisCluster, slot: int) -> Any:
    owner = r.nodes_manager.get_node_from_slot(slot)
    return next(n for n in r.get_primaries() if n.name != owner.name)


def test_stale_slot_map_is_followed_and_every_kind_of_request_is_resent(rc):
    """A driver that thinks another node serves its slot gets -MOVED for
    whatever it sends: adds, pops, drains, scripts. Each is re-sent to the
    right node (none of them ran), and the redirects are counted."""
    s = SortedSet(rc, "q")
    drv = routing(s)
    wrong = other_primary(rc, drv.slot)
    drv._note_moved(drv.slot, wrong.host, wrong.port)
    assert s.add_many(range(2500)) == 2500
    drv._note_moved(drv.slot, wrong.host, wrong.port)
    assert sum(len(b) for b in s.drain(1000)) == 2500
    drv._note_moved(drv.slot, wrong.host, wrong.port)
    s.add("a", 1)
    drv._note_moved(drv.slot, wrong.host, wrong.port)
    assert s.pop() == "a"
    leased = SortedSet(rc, "lq", leased=True)
    leased.add_many(["x", "y"], [1, 2])
    wrong = other_primary(rc, routing(leased).slot)
    routing(leased)._note_moved(routing(leased).slot, wrong.host, wrong.port)
    held = leased.take(2, lease=30)
    assert [h.item for h in held] == ["x", "y"]
    assert leased.ack_many(held) == 2
    assert drv.redirects["moved"] == 4 and routing(leased).redirects["moved"] == 1
    assert len(s) == 0 and len(leased) == 0 and leased.in_flight() == 0


def test_ask_during_a_slot_move_is_followed_with_asking(rc, own_cluster):
    """Mid-move (the set's keys already on the importing node, the slot not yet
    handed over) the old node answers -ASK: the driver re-sends there after
    ASKING, and a pop is not lost or repeated."""
    s = SortedSet(rc, "{m}")
    s.add_many(["a", "b", "c"], [1, 2, 3])
    slot = routing(s).slot
    source = own_cluster.primary_of(slot)
    target = next(p for p in own_cluster.ports if p != source and "master" in own_cluster.cli_call(p, "ROLE"))
    src_id, dst_id = own_cluster.node_id(source), own_cluster.node_id(target)
    own_cluster.cli_call(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
    own_cluster.cli_call(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
    own_cluster.cli_call(source, "MIGRATE", "127.0.0.1", str(target), "{m}", "0", "5000")
    try:
        assert s.pop() == "a"
        assert s.take(5) == ["b", "c"]
        s.add("d", 4)  # a write, re-sent to the importing node
        assert routing(s).redirects["ask"] == 3
    finally:
        for port in own_cluster.ports:
            if "master" in own_cluster.cli_call(port, "ROLE"):
                own_cluster.cli_call(port, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)
        own_cluster.wait_ok()
    assert s.take(5) == ["d"]


def test_dead_letter_key_in_another_slot_is_refused_before_anything_is_sent(rc):
    s = SortedSet(rc, "q", dead_letter_key="q:bad")
    with pytest.raises(ValueError, match=r"dead_letter_key 'q:bad' is in hash slot .* '\{q\}:bad'"):
        s.add("a")
    assert rc.exists("q") == 0


def _load(rc: RedisCluster, name: str, consumers: int, change: Any, leased: bool) -> Dict[str, Any]:
    """Produce distinct items into ``name`` from one thread, in batches of
    200, while ``consumers`` threads take them (leased: take + ack_many),
    until ``change(slot)`` (failovers, slot moves) is over. Returns what was
    seen."""
    producer_set = SortedSet(rc, name, leased=leased)
    done = threading.Event()
    produced = threading.Event()
    seen: List[List[str]] = [[] for _ in range(consumers)]
    errors: List[BaseException] = []
    sets = [producer_set]

    produced_count = [0]

    def produce() -> None:
        try:
            first = 0
            while not done.is_set():
                producer_set.add_many(["i%d" % i for i in range(first, first + 200)])
                first += 200
                produced_count[0] = first
                time.sleep(0.005)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            produced.set()

    def consume(k: int) -> None:
        s = SortedSet(rc, name, leased=leased)
        sets.append(s)
        try:
            while True:
                if leased:
                    held = s.take(100, lease=60)
                    if held:
                        seen[k].extend(h.item for h in held)
                        s.ack_many(held)
                        continue
                else:
                    got = s.take(100)
                    if got:
                        seen[k].extend(got)
                        continue
                if produced.is_set() and len(s) == 0 and (not leased or s.in_flight() == 0):
                    return
                time.sleep(0.005)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce)] + [
        threading.Thread(target=consume, args=(k,)) for k in range(consumers)]
    for t in threads:
        t.start()
    try:
        changes = change(routing(producer_set).slot)
    finally:
        done.set()
        for t in threads:
            t.join(120)
    all_seen = [item for part in seen for item in part]
    redirects = {"moved": 0, "ask": 0, "tryagain": 0, "mixed": 0}
    for s in sets:
        for kind, count in routing(s).redirects.items():
            redirects[kind] += count
    return {"errors": errors, "seen": all_seen, "n": produced_count[0], "redirects": redirects, "changes": changes,
            "left": len(producer_set), "in_flight": producer_set.in_flight() if leased else 0}


@pytest.mark.parametrize("leased", [False, True], ids=["plain", "leased"])
def test_five_failovers_under_load_lose_nothing_and_repeat_nothing(rc, own_cluster, leased, capsys):
    def change(slot: int) -> int:
        for _ in range(5):
            time.sleep(0.15)
            own_cluster.failover(slot)
        return 5

    got = _load(rc, "fo-%s" % leased, 2, change, leased)
    n = got["n"]
    assert got["errors"] == []
    assert n > 0 and len(got["seen"]) == n, "lost %d" % (n - len(set(got["seen"])))
    assert len(set(got["seen"])) == n  # delivered once each (leases of 60 s never expired)
    assert got["left"] == 0 and got["in_flight"] == 0
    assert got["redirects"]["moved"] > 0 and got["redirects"]["mixed"] == 0
    with capsys.disabled():
        print("\n[cluster] failovers=%d items=%d lost=0 twice=0 redirects=%s"
              % (got["changes"], n, got["redirects"]))


@pytest.mark.parametrize("leased", [False, True], ids=["plain", "leased"])
def test_live_reshard_of_the_sets_slot_under_load_loses_nothing(rc, own_cluster, leased, capsys):
    def change(slot: int) -> int:
        moves = 0
        for _ in range(2):
            time.sleep(0.2)
            source = own_cluster.primary_of(slot)
            target = next(p for p in own_cluster.ports
                          if p != source and "master" in own_cluster.cli_call(p, "ROLE"))
            own_cluster.move_slot(slot, target, batch=1)
            moves += 1
        return moves

    got = _load(rc, "rs-%s" % leased, 2, change, leased)
    n = got["n"]
    assert got["errors"] == []
    assert n > 0 and len(got["seen"]) == n, "lost %d" % (n - len(set(got["seen"])))
    assert len(set(got["seen"])) == n
    assert got["left"] == 0 and got["in_flight"] == 0
    # -MOVED after the move, -ASK during it, or -TRYAGAIN for a script whose
    # keys were split between the nodes: which ones depends on the timing
    assert sum(got["redirects"].values()) > 0, got["redirects"]
    assert got["redirects"]["mixed"] == 0
    with capsys.disabled():
        print("\n[cluster] reshards=%d items=%d lost=0 twice=0 redirects=%s"
              % (got["changes"], n, got["redirects"]))
