"""valkey-py clients, made by the user as a user would (the rest of the suite
runs every behaviour through valkey-py twins of its clients: the
``client_lib`` fixture): they get the fast drivers, and the errors of their
own library."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
import redis

import redset
import redset.asyncio as aredset
from redset.exceptions import PopOutcomeUnknown
from redset._io.aio import AsyncDriver
from redset._io.sync import SyncDriver

from .conftest import client_kwargs, flushed_client
from .proxy import CuttingProxy

valkey = pytest.importorskip("valkey")
import valkey.asyncio  # noqa: E402
import valkey.exceptions  # noqa: E402


@pytest.fixture
def vclient(server: Any, aimpl: Any, protocol: int) -> Iterator[Any]:
    """A valkey.Valkey of the session's server, flushed."""
    for _ in flushed_client(server, protocol):
        client = valkey.Valkey.from_url(server.url, **client_kwargs(protocol))
        try:
            yield client
        finally:
            client.close()


def test_valkey_clients_get_the_fast_drivers(vclient, server, protocol):
    s = redset.SortedSet(vclient, "q", leased=True)
    assert type(s._io) is SyncDriver and s._io.lib.root == "valkey"
    assert s.add_many(["a", "b", "c"]) == 3
    [lease] = s.take(1, lease=30)
    lease.ack()
    assert s.take(5) == ["b", "c"]

    async def main() -> None:
        client = valkey.asyncio.Valkey.from_url(server.url, **client_kwargs(protocol))
        a = aredset.SortedSet(client, "q2", leased=True)
        assert type(a._io) is AsyncDriver and a._io.lib.root == "valkey"
        assert await a.add_many(["x", "y"]) == 2
        [lease] = await a.take(1, lease=30)
        await lease.ack()
        assert [b async for b in a.drain(10)] == [["y"]]
        await client.aclose()

    asyncio.run(main())


def test_a_script_missing_from_the_cache_is_reloaded_on_valkey_py(vclient):
    # The first report of this issue: valkey-py's NoScriptError was not
    # recognised, so a leased set failed on its first add.
    s = redset.SortedSet(vclient, "q", leased=True)
    vclient.script_flush()
    assert s.add("a") is not None
    vclient.script_flush()
    [lease] = s.take(1, lease=30)
    vclient.script_flush()
    lease.ack()
    assert s.count() == 0 and s.in_flight() == 0


def test_server_errors_are_valkey_py_classes_and_name_the_key(vclient):
    vclient.set("q", "a string")
    s = redset.SortedSet(vclient, "q")
    for call in (lambda: s.add("a"), lambda: s.add_many(["a"]), lambda: s.take(2), lambda: list(s.drain(10))):
        with pytest.raises(valkey.exceptions.ResponseError, match=r"^WRONGTYPE .* on 'q'\)") as info:
            call()
        assert not isinstance(info.value, redis.exceptions.ResponseError)


def test_pop_outcome_unknown_is_caught_by_either_librarys_connection_error(server, vclient, protocol):
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttingProxy(port)
    client = valkey.Valkey.from_url(proxy.url, **client_kwargs(protocol))
    try:
        s = redset.SortedSet(client, "q")
        s.add_many(["a", "b"])
        proxy.cut_after(b"ZPOPMIN")
        with pytest.raises(valkey.exceptions.ConnectionError) as info:
            s.take(2)
        assert isinstance(info.value, PopOutcomeUnknown)
        assert isinstance(info.value, redis.exceptions.ConnectionError)
        assert type(info.value).__name__ == "PopOutcomeUnknown"
    finally:
        client.close()
        proxy.close()
