"""The hot paths whose cost ``benchmarks/cost.py`` gates, one per name.

Run as ``python -m benchmarks.cost_paths PATH IMPL REPS [URL]`` (under
callgrind, by :mod:`benchmarks.cost`): it sets the path up, runs it once
untimed (imports, first-call caches), then ``REPS`` more times. The gate runs
it twice, with ``REPS`` = 0 and with ``REPS`` = R, so the difference of the
two instruction counts is exactly R runs of the path, and divides by the
items a run handles.

``IMPL`` is ``c`` (the compiled codec), ``py`` (the pure-Python twin) or
``default`` (whichever redset picks by itself).
Paths that need a server (the drivers) get its ``URL``.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Dict, List, Tuple

import redis
import redis.asyncio

import redset
import redset._wire
import redset.asyncio as aredset
from redset._bench_core import RawConnection, get_workload
from redset._core import leasing
from redset._core.steps import LEASES, PAIRS, Recv, Send

#: Items one run of a path handles (a batch of 1,000, as the workloads use).
BATCH = 1000
#: Batches per run of a driver path (each a round trip to the server).
DRIVER_BATCHES = 20


def _set(workload: str, impl: Any, **kwargs: Any) -> Any:
    """A set on a client that is never connected: its codec and serializer."""
    redset._wire.impl = impl
    wl = get_workload(workload, BATCH)
    return redset.SortedSet(redis.Redis(port=1), "cost:q", serializer=wl.redset_serializer(), **kwargs), wl


def _encode(workload: str) -> Callable[[Any], Tuple[Callable[[], Any], int]]:
    def setup(impl: Any) -> Tuple[Callable[[], Any], int]:
        s, wl = _set(workload, impl)
        items, scores = wl.items, list(range(BATCH))
        key, codec, dumps = s._key, s._codec, s._dumps

        def run() -> Any:
            return impl.pack_zadd(key, (b"NX",), items, scores, codec, dumps)

        return run, BATCH

    return setup


def _reply(members: List[bytes], resp: int) -> bytes:
    """A ZPOPMIN reply of ``members`` at scores 0, 1, ...: RESP2 flat bulk
    pairs, or RESP3 nested pairs with doubles (Redis 7+, Valkey)."""
    if resp == 2:
        out = [b"*%d\r\n" % (2 * len(members))]
        for i, m in enumerate(members):
            out.append(b"$%d\r\n%s\r\n$%d\r\n%d\r\n" % (len(m), m, len(b"%d" % i), i))
    else:
        out = [b"*%d\r\n" % len(members)]
        for i, m in enumerate(members):
            out.append(b"*2\r\n$%d\r\n%s\r\n,%d\r\n" % (len(m), m, i))
    return b"".join(out)


def _decode(workload: str, resp: int) -> Callable[[Any], Tuple[Callable[[], Any], int]]:
    def setup(impl: Any) -> Tuple[Callable[[], Any], int]:
        s, wl = _set(workload, impl)
        data = _reply(wl.members, resp)
        # Fed in the pieces a socket read delivers, with a parse attempt
        # after each, as the drivers do.
        pieces = [data[i:i + 16384] for i in range(0, len(data), 16384)]
        reader = impl.PopReader(s._codec, s._loads, True)

        def run() -> Any:
            failures: List[Any] = []
            got: Any = False
            for piece in pieces:
                reader.feed(piece)
                got = reader.gets(failures)
            if len(got) != BATCH:
                raise AssertionError("decoded %r items" % (len(got),))
            return got

        return run, BATCH

    return setup


def _play(plan: Any, answer: Callable[[Any], Any]) -> Any:
    """Run a plan on scripted replies (as tests/test_plans.py does)."""
    reply: Any = None
    while True:
        try:
            req = plan.send(reply)
        except StopIteration as stop:
            return stop.value
        reply = answer(req)


def _lease(workload: str) -> Callable[[Any], Tuple[Callable[[], Any], int]]:
    """The client side of a leased take of 1,000 and the ack_many of them: the
    plans, encoding the script calls, parsing the batch's ZRANGE reply into
    handles (as a driver does, with the codec's PopReader), the ack."""

    def setup(impl: Any) -> Tuple[Callable[[], Any], int]:
        s, wl = _set(workload, impl, leased=True)
        data = _reply(wl.members, 2)
        pieces = [data[i:i + 16384] for i in range(0, len(data), 16384)]
        reader = impl.PopReader(s._codec, s._loads, True)
        head = [(b"staged", float(BATCH))]
        handle = s._make_lease

        def run() -> Any:
            def take_answer(req: Any) -> Any:
                if type(req) is Send:
                    for cmd in req.cmds:
                        bytes(cmd.packed)  # the driver writes these bytes
                    return None
                assert type(req) is Recv, req
                if req.mode == PAIRS:
                    return head
                assert req.mode == LEASES, req
                failures: List[Any] = []
                got: Any = False
                for piece in pieces:
                    reader.feed(piece)
                    got = reader.gets(failures, None, req.leases + (req.codec, req.loads))
                return got, failures

            leases, failed = _play(leasing.lease_take(s, BATCH, 30.0, handle), take_answer)
            assert len(leases) == BATCH and not failed

            def ack_answer(req: Any) -> Any:
                return None if type(req) is Send else [1]

            acked, stale = _play(leasing.ack_many(s, leases), ack_answer)
            assert acked == BATCH and not stale
            return acked

        return run, BATCH

    return setup


def _drain(driver: str) -> Callable[[Any, str], Tuple[Callable[[], Any], int]]:
    """``drain(1000)`` of W1 through a driver against a real server (or, for
    ``"take"``, the sync ``take(1000)`` loop until the set is empty): the
    driver's own cost per batch rides on top of decoding."""

    def setup(impl: Any, url: str) -> Tuple[Callable[[], Any], int]:
        redset._wire.impl = impl
        wl = get_workload("w1", BATCH * DRIVER_BATCHES)
        # The set is refilled before each run with pre-encoded ZADDs on a
        # bare socket: a few instructions per item, next to the drain's.
        admin = RawConnection(url)
        key = wl.key.decode()
        payload, chunks = wl.zadd_payload, len(range(0, wl.n, BATCH))

        def fill() -> None:
            admin.call(b"DEL", wl.key)
            admin.exchange(payload, chunks)

        if driver == "sync":
            s = redset.SortedSet(redis.Redis.from_url(url), key)

            def run() -> Any:
                fill()
                n = sum(len(batch) for batch in s.drain(BATCH))
                assert n == wl.n, n
                return n

            return run, wl.n

        if driver == "take":
            t = redset.SortedSet(redis.Redis.from_url(url), key)

            def run_take() -> Any:
                # The benchmark's take(1000) loop: one round trip per batch,
                # the plan, driver and facade paid for each.
                fill()
                n = 0
                while True:
                    got = len(t.take(BATCH))
                    n += got
                    if got < BATCH:
                        break
                assert n == wl.n, n
                return n

            return run_take, wl.n

        loop = asyncio.new_event_loop()

        async def make() -> Any:
            return aredset.SortedSet(redis.asyncio.Redis.from_url(url), key)

        a = loop.run_until_complete(make())

        async def drain() -> int:
            return sum([len(batch) async for batch in a.drain(BATCH)])

        def run_async() -> Any:
            fill()
            n = loop.run_until_complete(drain())
            assert n == wl.n, n
            return n

        return run_async, wl.n

    return setup


#: name -> setup(impl) returning (run, items per run)
PATHS: Dict[str, Callable[..., Tuple[Callable[[], Any], int]]] = {
    "encode-w1": _encode("w1"),
    "encode-w2-orjson": _encode("w2-orjson"),
    "decode-w1-resp2": _decode("w1", 2),
    "decode-w1-resp3": _decode("w1", 3),
    "decode-w2-orjson-resp3": _decode("w2-orjson", 3),
    "lease-take-ack-w1": _lease("w1"),
}
#: Paths that need a server; their cost includes the driver's share (the
#: syscalls' user-side cost and, for asyncio, the event loop's).
SERVER_PATHS: Dict[str, Callable[..., Tuple[Callable[[], Any], int]]] = {
    "drain-sync-w1": _drain("sync"),
    "take-sync-w1": _drain("take"),
    "drain-asyncio-w1": _drain("asyncio"),
}


def main(argv: List[str]) -> int:
    name, impl_name, reps = argv[0], argv[1], int(argv[2])
    impl = {"c": redset._wire.compiled, "py": redset._wire.pure, "default": redset._wire.impl}[impl_name]
    if impl is None:
        raise SystemExit("the compiled extension is not built")
    if name in SERVER_PATHS:
        run, items = SERVER_PATHS[name](impl, argv[3])
    else:
        run, items = PATHS[name](impl)
    run()  # untimed: imports, caches, first allocations
    for _ in range(reps):
        run()
    print(items)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
