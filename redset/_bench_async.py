"""asyncio contenders of the benchmark: ``redset.asyncio`` and
``redis.asyncio`` written by hand, beside the sync rows of the same run.

Each case owns one event loop; a timed round is one ``run_until_complete``
of the whole operation, so the loop's own cost is measured as a user's
program would pay it.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

from redset._bench_cases import Case, RedsetCase, client_class
from redset._bench_core import CHUNK, LEASE_SECONDS, PIPELINE_DEPTH, BenchmarkError, collect_pops, Workload

__all__ = ["AsyncRedsetCase", "AsyncRedsetDrainCase", "AsyncRedsetLeaseCase", "AsyncRedisPyCase", "ASYNC_CASES"]


async def _aclose(client: Any) -> None:
    # aclose() from redis-py 5.0.1 on; close() before it.
    await (client.aclose() if hasattr(client, "aclose") else client.close())


class _AsyncCase(Case):
    """A case whose work is a coroutine, run on the case's own event loop."""

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        self.loop = asyncio.new_event_loop()  # first: connect() may need it
        try:
            super().__init__(workload, op, url)
        except BaseException:
            self.loop.close()
            raise

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.aclose())
        finally:
            self.loop.close()
            Case.close(self)

    async def aclose(self) -> None:
        pass

    def run(self) -> Any:
        return self.loop.run_until_complete(self.arun())

    async def arun(self) -> Any:
        raise NotImplementedError


class AsyncRedsetCase(_AsyncCase, RedsetCase):
    """``redset.asyncio.SortedSet`` on a ``redis.asyncio.Redis`` client."""

    contender = "redset-async"
    set_module = "redset.asyncio"

    def connect(self, url: str) -> Any:
        client = client_class(self.client_lib, asyncio=True).from_url(url)
        self.loop.run_until_complete(client.ping())
        return client

    async def aclose(self) -> None:
        await _aclose(self.client)

    async def arun(self) -> Any:
        s, wl = self.set, self.workload
        if self.op == "add":
            return await s.add_many(wl.items, range(wl.n))
        if self.drain:
            return [item async for batch in s.drain(CHUNK) for item in batch]
        out: List[Any] = []
        if self.lease:
            while True:
                leases = await s.take(CHUNK, lease=LEASE_SECONDS)
                out.extend([x.item for x in leases])
                await s.ack_many(leases)
                if len(leases) < CHUNK:
                    return out
        size = 1 if self.op == "pop" else CHUNK
        while True:
            try:
                got = [await s.pop()] if size == 1 else await s.take(size)
            except KeyError:  # pop() on an empty set
                return out
            out += got
            if len(got) < size:
                return out


class AsyncRedsetDrainCase(AsyncRedsetCase):
    contender = "redset-async-drain"
    drain = True


class AsyncRedsetLeaseCase(AsyncRedsetCase):
    contender = "redset-async-lease"
    lease = True

    def prepare(self) -> None:
        self.loop.run_until_complete(self.set.clear())
        super().prepare()

    def check(self, result: Any) -> None:
        super().check(result)
        left = self.loop.run_until_complete(self.set.in_flight())
        if left:
            raise BenchmarkError("%s: %d leases left in flight" % (self.contender, left))


class AsyncRedisPyCase(_AsyncCase):
    """``redis.asyncio`` (hiredis parser) by hand: the same pipelines as the
    sync redis-py contender, awaited."""

    contender = "redis-py-async"
    protocol: Optional[int] = None

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        super().__init__(workload, op, url)
        import redis.asyncio

        kwargs: Dict[str, Any] = {"decode_responses": workload.decode_responses}
        self.client = redis.asyncio.Redis.from_url(url, **kwargs)
        self.loop.run_until_complete(self.client.ping())

    async def aclose(self) -> None:
        await _aclose(self.client)

    async def arun(self) -> Any:
        wl, key = self.workload, self.workload.key
        if self.op == "add":
            pipe = self.client.pipeline(transaction=False)
            added = 0
            for mapping in wl.mappings():
                pipe.zadd(key, mapping, nx=True)
                if len(pipe) >= PIPELINE_DEPTH:
                    added += sum(await pipe.execute())
            if len(pipe):
                added += sum(await pipe.execute())
            return added
        loads = wl.loads
        out: List[Any] = []
        if self.op == "pop":
            load = loads or (lambda member: member)
            while True:
                popped = await self.client.zpopmin(key)
                if not popped:
                    return out
                out.append(load(popped[0][0]))
        pipe = self.client.pipeline(transaction=False)
        while True:
            for _ in range(PIPELINE_DEPTH):
                pipe.zpopmin(key, CHUNK)
            if collect_pops(await pipe.execute(), loads, out):
                return out


ASYNC_CASES = (AsyncRedsetCase, AsyncRedsetDrainCase, AsyncRedsetLeaseCase, AsyncRedisPyCase)
