"""asyncio contenders of the benchmark: ``redset.asyncio`` and
``redis.asyncio`` written by hand, beside the sync rows of the same run.

Each case owns one event loop; a timed round is one ``run_until_complete``
of the whole operation, so the loop's own cost is measured as a user's
program would pay it.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

from redset._bench_cases import Case
from redset._bench_core import CHUNK, PIPELINE_DEPTH, Unavailable, Workload

__all__ = ["AsyncRedsetCase", "AsyncRedsetDrainCase", "AsyncRedisPyCase", "ASYNC_CASES"]


async def _aclose(client: Any) -> None:
    # aclose() from redis-py 5.0.1 on; close() before it.
    await (client.aclose() if hasattr(client, "aclose") else client.close())


class _AsyncCase(Case):
    """A case whose work is a coroutine, run on the case's own event loop."""

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        super().__init__(workload, op, url)
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.aclose())
        finally:
            self.loop.close()
            super().close()

    async def aclose(self) -> None:
        pass

    def run(self) -> Any:
        return self.loop.run_until_complete(self.arun())

    async def arun(self) -> Any:
        raise NotImplementedError


class AsyncRedsetCase(_AsyncCase):
    """``redset.asyncio.SortedSet`` on a ``redis.asyncio.Redis`` client."""

    contender = "redset-async"
    wire = "compiled"
    drain = False

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        try:
            import redis.asyncio

            from redset import _wire
            from redset.asyncio import SortedSet
        except ImportError as exc:
            raise Unavailable("redset.asyncio is not importable: %s" % exc) from None
        codec = getattr(_wire, self.wire)
        if codec is None:
            raise Unavailable("the compiled codec redset._wire_c is not built")
        super().__init__(workload, op, url)
        self.client = redis.asyncio.Redis.from_url(url)
        self.loop.run_until_complete(self.client.ping())
        self.set = SortedSet(self.client, workload.key.decode(), serializer=workload.redset_serializer())
        self.set._wire = codec

    async def aclose(self) -> None:
        await _aclose(self.client)

    async def arun(self) -> Any:
        s = self.set
        if self.op == "add":
            return await s.add_many(self.workload.items, range(self.workload.n))
        out: List[Any] = []
        if self.op == "pop":
            pop, append = s.pop, out.append
            try:
                while True:
                    append(await pop())
            except KeyError:
                return out
        if self.drain:
            async for batch in s.drain(CHUNK):
                out.extend(batch)
            return out
        while True:
            batch = await s.take(CHUNK)
            out.extend(batch)
            if len(batch) < CHUNK:
                return out


class AsyncRedsetDrainCase(AsyncRedsetCase):
    contender = "redset-async-drain"
    drain = True


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
            items, dumps = wl.items, wl.dumps
            pipe = self.client.pipeline(transaction=False)
            added = 0
            for chunk in wl.chunks():
                pipe.zadd(key, {dumps(items[i]): i for i in chunk}, nx=True)
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
            done = False
            for batch in await pipe.execute():
                if loads is None:
                    out.extend([member for member, _ in batch])
                else:
                    out.extend([loads(member) for member, _ in batch])
                done = done or len(batch) < CHUNK
            if done:
                return out


ASYNC_CASES = (AsyncRedsetCase, AsyncRedsetDrainCase, AsyncRedisPyCase)
