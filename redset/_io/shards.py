"""The drivers of sharded sets: they run :mod:`redset._core.sharding` plans.

Such a plan yields :class:`~redset._core.steps.Fan` (run these ordinary
plans on these shards, all at once), :class:`Sleep` and :class:`Deliver`;
every byte to a server goes through the shards' own drivers. The sync driver
runs the jobs of a fan on a thread pool (one thread per shard; the first
job on the calling thread), the asyncio driver as tasks.

Interruptions: if the caller is interrupted while a fan runs (a
KeyboardInterrupt in the sync driver; cancellation in the asyncio one), the
driver lets every job end first (asyncio: it cancels them, and each puts
back what it had popped, as any cancelled plan does), then throws
:class:`Cancelled`, with the fan's results as its ``results``, into the
plan, so that the plan can put back what the finished jobs popped; then the
interruption goes on.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, AsyncIterator, Generator, Iterator, List, Optional, Sequence, Tuple

from redset._core.steps import Cancelled, Deliver, Fan, FanResult, Sleep, StopDelivery
from redset._io.sync import _Driver

__all__ = ["ShardDriver", "AsyncShardDriver"]

Jobs = Sequence[Tuple[Any, Any]]


class _Steps:
    """Stepping a sharded plan: what both drivers share."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.interrupted: Optional[BaseException] = None
        self.result: Any = None

    def requests(self) -> Iterator[Any]:
        """The plan's requests; the caller answers each (``value``/``error``)."""
        while True:
            try:
                if self.error is not None:
                    error, self.error = self.error, None
                    req = self.plan.throw(error)
                else:
                    value, self.value = self.value, None
                    req = self.plan.send(value)
            except StopIteration as stop:
                self.result = stop.value
                break
            except BaseException:
                if self.interrupted is not None:
                    raise self.interrupted from None
                raise
            if type(req) not in (Fan, Sleep, Deliver):
                raise TypeError("a sharded set's plan yielded %r" % (req,))
            yield req
        if self.interrupted is not None:
            raise self.interrupted

    def fanned(self, results: List[FanResult], interrupted: Optional[BaseException]) -> None:
        """Answer a fan; after an interruption, throw :class:`Cancelled` instead."""
        if interrupted is not None and self.interrupted is None:
            self.interrupted = interrupted
            cancelled = Cancelled()
            cancelled.results = results  # type: ignore[attr-defined]
            self.error = cancelled
        else:
            self.value = results

    def close(self) -> None:
        self.plan.close()


def _result(future: Any) -> FanResult:
    if future.cancelled():
        return FanResult(error=asyncio.CancelledError())
    error = future.exception()
    return FanResult(error=error) if error is not None else FanResult(future.result())


class ShardDriver(_Driver):
    """Run a sharded set's plans, fanning out on threads (``run`` and
    ``iterate`` as every sync driver)."""

    def __init__(self, owner: Any) -> None:
        self._shards: List[Any] = owner._shard_sets
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def socket_timeout(self) -> Optional[float]:
        return self._shards[0]._io.socket_timeout()  # type: ignore[no-any-return]

    def _drive(self, plan: Any) -> Generator[Any, None, Any]:
        st = _Steps(plan)
        try:
            for req in st.requests():
                kind = type(req)
                if kind is Fan:
                    st.fanned(*self._fan(req.jobs))
                elif kind is Sleep:
                    time.sleep(req.seconds)
                else:
                    try:
                        yield req.value
                    except GeneratorExit:  # the caller stopped iterating
                        st.error = StopDelivery()
            return st.result
        finally:
            st.close()

    def _fan(self, jobs: Jobs) -> Tuple[List[FanResult], Optional[BaseException]]:
        if not jobs:
            return [], None
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, len(self._shards) - 1), thread_name_prefix="redset-shards")
        futures = [self._pool.submit(shard._io.run, plan) for shard, plan in jobs[1:]]
        interrupted: Optional[BaseException] = None
        shard, plan = jobs[0]
        try:
            first = FanResult(shard._io.run(plan))
        except Exception as exc:  # noqa: BLE001 - handed to the plan
            first = FanResult(error=exc)
        except BaseException as exc:  # KeyboardInterrupt: the others still end first
            first = FanResult(error=exc)
            interrupted = exc
        while True:
            try:
                concurrent.futures.wait(futures)
                break
            except BaseException as exc:  # noqa: BLE001 - the jobs end first, then it goes on
                interrupted = interrupted or exc
        return [first] + [_result(f) for f in futures], interrupted


class AsyncShardDriver:
    """Run a sharded set's plans, fanning out as asyncio tasks."""

    def __init__(self, owner: Any) -> None:
        self._shards: List[Any] = owner._shard_sets

    def socket_timeout(self) -> Optional[float]:
        return self._shards[0]._io.socket_timeout()  # type: ignore[no-any-return]

    async def run(self, plan: Any) -> Any:
        """Run a plan to its end and return its result."""
        st = _Steps(plan)
        try:
            for req in st.requests():
                if type(req) is Deliver:
                    raise RuntimeError("a plan delivered values to run(); use iterate()")
                await self._perform(st, req)
            return st.result
        finally:
            st.close()

    async def iterate(self, plan: Any) -> AsyncIterator[Any]:
        """Run an iterating plan, yielding what it delivers."""
        st = _Steps(plan)
        try:
            for req in st.requests():
                if type(req) is not Deliver:
                    await self._perform(st, req)
                    continue
                try:
                    yield req.value
                except GeneratorExit:
                    st.error = StopDelivery()
        finally:
            st.close()

    async def _perform(self, st: _Steps, req: Any) -> None:
        if type(req) is Sleep:
            await asyncio.sleep(req.seconds)
            return
        tasks = [asyncio.ensure_future(shard._io.run(plan)) for shard, plan in req.jobs]
        interrupted: Optional[BaseException] = None
        while tasks:
            try:
                await asyncio.wait(tasks)
                break
            except asyncio.CancelledError as exc:
                # Each job puts back what it popped when cancelled; finished
                # ones are the plan's to put back.
                interrupted = interrupted or exc
                for task in tasks:
                    task.cancel()
        st.fanned([_result(t) for t in tasks], interrupted)
