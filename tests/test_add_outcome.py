"""add_many says what it stored when it fails: stored, refused, unknown, not sent."""
from __future__ import annotations

from typing import Any, Iterator, List, Set, Tuple

import pytest
import redis

from redset import SortedSet
from redset.exceptions import AddOutcome, InvalidItemError

from .conftest import client_kwargs
from .proxy import CuttingProxy



def _oom(errors):
    """The client library's class for -OOM (redis-py < 4.? has none)."""
    return getattr(errors, "OutOfMemoryError", errors.ResponseError)


def members(ranges: List[Tuple[int, int]]) -> Set[str]:
    return {"m%05d" % i for a, b in ranges for i in range(a, b)}


def check_against_server(r: redis.Redis, key: str, outcome: AddOutcome, n: int) -> None:
    """Stored ranges are in the set, refused and not-sent ones are not, and
    the ranges with the never-sent rest cover the whole input."""
    present = {m.decode() for m in r.zrange(key, 0, -1)}
    assert members(outcome.stored) <= present
    assert not members(outcome.refused) & present
    assert outcome.not_sent_from is not None
    assert not members([(outcome.not_sent_from, outcome.consumed)]) & present
    covered = sorted(outcome.stored + outcome.refused + outcome.unknown + [(outcome.not_sent_from, n)])
    end = 0
    for a, b in covered:
        assert a == end, covered
        end = b
    assert end == n


@pytest.mark.parametrize("leased", [False, True])
def test_server_error_refuses_every_chunk_and_names_the_key(r, errors, leased):
    r.set("q", "not a sorted set")
    s = SortedSet(r, "q", chunk_size=100, leased=leased)
    with pytest.raises(errors.ResponseError, match=r"WRONGTYPE .* on 'q'") as info:
        s.add_many(["m%05d" % i for i in range(250)], range(250))
    outcome = info.value.outcome
    if leased:  # one script call at a time: the first refusal stops the call
        assert outcome.refused == [(0, 100)] and outcome.not_sent_from == 100
    else:  # every chunk in flight was answered
        assert outcome.refused == [(0, 250)] and outcome.not_sent_from == 250
    assert outcome.stored == [] and outcome.unknown == []
    assert "stored: none; refused: 0-" in str(info.value)


@pytest.mark.parametrize("leased", [False, True])
def test_bad_item_stops_the_call_and_says_what_was_stored(r, leased):
    items: List[Any] = ["m%05d" % i for i in range(3000)]
    items[2500] = object()
    s = SortedSet(r, "q", chunk_size=1000, leased=leased)
    with pytest.raises(InvalidItemError) as info:
        s.add_many(iter(items), range(3000))
    err = info.value
    assert err.index == 2500 and err.sent == 2000
    assert err.outcome.stored == [(0, 2000)] and err.outcome.refused == [] and err.outcome.unknown == []
    assert err.outcome.not_sent_from == 2000 and err.outcome.consumed == 3000
    assert err.outcome.retry_ranges() == [(2000, 3000)]
    assert r.zcard("q") == 2000
    check_against_server(r, "q", err.outcome, 3000)


@pytest.fixture
def cut_every_time(server, r) -> Iterator[Tuple[redis.Redis, CuttingProxy]]:
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttingProxy(port)
    client = redis.Redis.from_url(proxy.url, **client_kwargs(r.connection_pool.connection_kwargs.get("protocol", 2)))
    try:
        yield client, proxy
    finally:
        client.close()
        proxy.close()


@pytest.mark.single_server
def test_connection_lost_for_good_says_what_is_unknown(r, errors, cut_every_time):
    client, proxy = cut_every_time
    s = SortedSet(client, "q", chunk_size=100)
    s.count()  # connect before the cuts start
    proxy.cut_after(b"ZADD", times=100)
    with pytest.raises(errors.ConnectionError) as info:
        s.add_many(("m%05d" % i for i in range(2000)), range(2000))
    outcome = info.value.outcome
    assert outcome.unknown, outcome
    assert "unknown: " in str(info.value)
    check_against_server(r, "q", outcome, 2000)
    # The retry recipe completes the add: ZADD NX makes re-sending harmless.
    proxy.cut_after(b"ZADD", times=0)
    retry = [i for a, b in outcome.retry_ranges() for i in range(a, b)]
    s.add_many(["m%05d" % i for i in retry], retry)
    s.add_many(("m%05d" % i for i in range(outcome.consumed, 2000)), range(outcome.consumed, 2000))
    assert r.zcard("q") == 2000


def test_out_of_memory_keeps_its_class_and_every_range_is_true(server, impl, errors):
    """Sweep maxmemory around the point where add_many stops fitting: every
    refused call is an OutOfMemoryError whose outcome matches the server."""
    srv_client = redis.Redis.from_url(server.url)
    srv_client.flushdb()
    s = SortedSet(srv_client, "oom", chunk_size=500)
    raised = 0
    try:
        for step in range(12):
            srv_client.delete("oom")
            srv_client.config_set("maxmemory", 0)
            used = int(srv_client.info("memory")["used_memory"])
            srv_client.config_set("maxmemory-policy", "noeviction")
            srv_client.config_set("maxmemory", used + step * 20000)
            try:
                s.add_many(["m%05d:%s" % (i, "x" * 60) for i in range(1500)], range(1500))
            except _oom(errors) as exc:
                raised += 1
                outcome = exc.outcome
                srv_client.config_set("maxmemory", 0)
                present = {m.decode().split(":")[0] for m in srv_client.zrange("oom", 0, -1)}
                assert members(outcome.stored) <= present
                assert not members(outcome.refused) & present
                assert outcome.refused and outcome.not_sent_from == 1500
                assert "[add_many: stored: " in str(exc)
    finally:
        srv_client.config_set("maxmemory", 0)
        srv_client.delete("oom")
        srv_client.close()
    assert raised, "the sweep never reached the limit"
