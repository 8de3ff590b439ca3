"""Nothing lost: pops are never re-sent blindly, adds are safely retried.

A proxy between client and server cuts the connection after a command was
forwarded and executed, before its reply arrives.
"""
from __future__ import annotations

import time
from typing import Iterator

import pytest
import redis

from redset import ScheduledSet, SortedSet, scripts
from redset.exceptions import PopOutcomeUnknown

from .conftest import client_kwargs
from .proxy import CuttingProxy


# Cuts of one server's connection, through a proxy in front of it.
pytestmark = pytest.mark.single_server


@pytest.fixture
def proxied(server, r) -> Iterator[tuple]:
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttingProxy(port)
    client = redis.Redis.from_url(proxy.url, **client_kwargs(r.connection_pool.connection_kwargs.get("protocol", 2)))
    r.config_resetstat()
    try:
        yield client, proxy
    finally:
        client.close()
        proxy.close()


def calls(r: redis.Redis, command: str) -> int:
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_%s" % command, {}).get("calls", 0))


@pytest.mark.parametrize("op", ["pop", "take"])
def test_pop_cut_after_send_raises_outcome_unknown_and_is_not_resent(r, errors, proxied, op):
    client, proxy = proxied
    s = SortedSet(client, "q")
    s.add_many(["a", "b", "c"], [1, 2, 3])
    proxy.cut_after(b"ZPOPMIN")
    with pytest.raises(PopOutcomeUnknown) as info:
        s.pop() if op == "pop" else s.take(2)
    # redis-py's ConnectionError always, and the client library's
    assert isinstance(info.value, redis.ConnectionError) and isinstance(info.value, errors.ConnectionError)
    assert "not retried" in str(info.value) and "'q'" in str(info.value)
    assert calls(r, "zpopmin") == 1  # sent once, never re-sent
    # The server did pop them: that is what "outcome unknown" warns about.
    assert r.zcard("q") == (2 if op == "pop" else 1)
    # The set keeps working on a fresh connection.
    assert s.take(5) == (["b", "c"] if op == "pop" else ["c"])


def test_scheduled_pop_cut_is_not_resent(r, proxied):
    client, proxy = proxied
    s = ScheduledSet(client, "q")
    s.add_many(["a", "b"], [time.time() - 5, time.time() - 4])
    s.available()  # warm the connection
    assert s.take(0) == []
    client.script_load(scripts.POP_DUE)  # the cut is to hit the pop itself
    r.config_resetstat()
    proxy.cut_after(b"EVALSHA")
    with pytest.raises(PopOutcomeUnknown):
        s.take(1)
    assert calls(r, "evalsha") == 1
    assert r.zcard("q") == 1


def test_drain_cut_raises_outcome_unknown(r, proxied):
    client, proxy = proxied
    s = SortedSet(client, "q")
    s.add_many(("m%d" % i for i in range(3000)), range(3000))
    proxy.cut_after(b"ZPOPMIN")
    with pytest.raises(PopOutcomeUnknown):
        for _ in s.drain(1000):
            pass  # pragma: no cover - the first reply never arrives
    assert calls(r, "zpopmin") == 1


def test_add_many_is_resent_after_a_cut_and_loses_nothing(r, proxied):
    client, proxy = proxied
    s = SortedSet(client, "q", chunk_size=100)
    proxy.cut_after(b"ZADD")
    added = s.add_many(("m%d" % i for i in range(1000)), range(1000))
    assert proxy.cuts == 1
    assert r.zcard("q") == 1000
    # Members whose first ZADD applied before the cut are not counted again.
    assert 0 < added <= 1000
    assert calls(r, "zadd") > 10


def test_add_is_resent_after_a_cut(r, proxied):
    client, proxy = proxied
    s = SortedSet(client, "q")
    proxy.cut_after(b"ZADD")
    assert s.add("a", 1) == 1
    assert proxy.cuts == 1
    assert r.zscore("q", "a") == 1.0


def test_reads_are_retried_after_a_cut(r, proxied):
    client, proxy = proxied
    s = SortedSet(client, "q")
    s.add("a")
    proxy.cut_after(b"ZCARD")
    assert len(s) == 1
    assert proxy.cuts == 1


def test_server_gone_gives_connection_error_not_outcome_unknown(impl, errors):
    # Nothing is listening: the pop was never sent, so this is a plain error.
    from redset.testing import free_port

    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry_on_error=[], retry=None)
    s = SortedSet(client, "q")
    with pytest.raises(errors.ConnectionError) as info:
        s.pop()
    assert not isinstance(info.value, PopOutcomeUnknown)
