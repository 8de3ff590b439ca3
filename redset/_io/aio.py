"""The asyncio driver: run plans on a ``redis.asyncio`` client, moving bytes only.

It takes a connection from the client's pool, writes the plan's packed RESP
bytes, reads ordinary replies with the connection's own parser and pop
replies straight from its stream into the codec's ``PopReader``.

Cancellation: a plan holds its connection from its first command to its
end. If the task is cancelled in between, the connection may hold a reply
nobody will read, so it is closed, never handed to the next caller (the
CVE-2023-28858 class of bug). A pop cancelled after it was sent is finished
in a shielded task: its reply is read and the items put back (at-most-once
mode), or left leased until they expire (lease mode): see
:func:`redset._core.calls.pop`.
"""
from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any, AsyncIterator, List, Optional

import redis
import redis.asyncio

from redset._core.steps import (
    NETWORK_ERRORS, RAW, Deliver, Drop, NotSent, Recv, Send, Sleep, StopDelivery,
)
from redset._io.replies import FILL, READ, PopState, as_bytes

def _joined(cmds: Any) -> bytes:
    """One buffer for one write: redis-py writes each list element with its own sendall()."""
    return cmds[0].packed if len(cmds) == 1 else b"".join([c.packed for c in cmds])


__all__ = ["AsyncDriver", "AsyncClientDriver", "make_async_driver"]

_RECV_SIZE = 65536


class _Plan:
    """Step a plan; the drivers below do the I/O of each request."""

    __slots__ = ("plan", "answer", "error")

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.answer: Any = None
        self.error: Optional[BaseException] = None

    def next(self) -> Any:
        answer, error = self.answer, self.error
        self.answer = self.error = None
        return self.plan.send(answer) if error is None else self.plan.throw(error)


class _AsyncBase:
    wire: ModuleType

    async def run(self, plan: Any) -> Any:
        """Run a plan to its end and return its result."""
        result: List[Any] = []
        steps = self._drive(plan, result)
        async for _ in steps:
            await steps.aclose()  # type: ignore[attr-defined]
            raise RuntimeError("a plan delivered values to run(); use iterate()")
        return result[0]

    def iterate(self, plan: Any) -> AsyncIterator[Any]:
        """Run an iterating plan, yielding what it delivers."""
        return self._drive(plan, [])

    async def socket_timeout(self) -> Optional[float]:
        return None

    def _drive(self, plan: Any, result: List[Any]) -> AsyncIterator[Any]:
        raise NotImplementedError


class AsyncDriver(_AsyncBase):
    """Drive a pooled ``redis.asyncio`` connection with pre-encoded RESP bytes."""

    def __init__(self, client: "redis.asyncio.Redis", wire: ModuleType, socket_pops: bool) -> None:
        self.client = client
        self.pool = client.connection_pool
        self.wire = wire
        self.socket_pops = socket_pops
        self._timeout: Any = False

    async def _acquire(self) -> Any:
        single = getattr(self.client, "connection", None)
        if single is not None:
            await single.connect()
            return single
        try:
            return await self.pool.get_connection()
        except TypeError:  # redis-py < 5.3 requires a command name
            return await self.pool.get_connection("_")

    async def _release(self, conn: Any) -> None:
        if conn is not getattr(self.client, "connection", None):
            await self.pool.release(conn)

    async def socket_timeout(self) -> Optional[float]:
        if self._timeout is False:
            value = self.pool.connection_kwargs.get("socket_timeout")
            self._timeout = float(value) if value else None
        return self._timeout  # type: ignore[no-any-return]

    async def _drive(self, plan: Any, result: List[Any]) -> AsyncIterator[Any]:  # type: ignore[override]
        steps = _Plan(plan)
        conn: Any = None
        stream: Any = None
        pops: Optional[PopState] = None
        try:
            while True:
                try:
                    req = steps.next()
                except StopIteration as stop:
                    result.append(stop.value)
                    return
                kind = type(req)
                if kind is Deliver:
                    try:
                        yield req.value
                    except GeneratorExit:
                        steps.error = StopDelivery()
                    continue
                try:
                    if kind is Send:
                        if conn is None:
                            try:
                                conn = await self._acquire()
                            except NETWORK_ERRORS as exc:
                                raise NotSent(exc) from exc
                        await conn.send_packed_command([_joined(req.cmds)], check_health=False)
                    elif kind is Recv:
                        if req.mode == RAW:
                            steps.answer = await _read_raw(conn)
                        else:
                            if pops is None:
                                stream = self._stream_of(conn)
                                pops = PopState(self.wire, stream is not None, memoryview(b""))
                            steps.answer = await _read_pop(conn, stream, pops, req)
                    elif kind is Sleep:
                        await asyncio.sleep(req.seconds)
                    elif kind is Drop:
                        await _close(conn)
                        conn = pops = None
                    else:
                        raise TypeError("a plan yielded %r" % (req,))
                except NotSent as exc:
                    steps.error = exc
                except NETWORK_ERRORS as exc:
                    await _close(conn)
                    conn = pops = None
                    steps.error = exc
        except BaseException:
            # Cancelled or failed mid-command: what is left on the
            # connection belongs to no one. Close it before it goes back.
            _abandon(conn)
            if conn is not None:
                await self._release(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                if pops is not None and pops.dirty():
                    _abandon(conn)
                await self._release(conn)
            plan.close()

    def _stream_of(self, conn: Any) -> Any:
        """The connection's stream if pops can be read from it directly, else None."""
        if not self.socket_pops:
            return None
        stream = getattr(conn, "_reader", None)
        if stream is None or not hasattr(stream, "read"):
            return None
        parser = getattr(conn, "_parser", None)
        reader = getattr(parser, "_reader", None)  # hiredis: bytes read ahead would be lost
        if reader is not None and hasattr(reader, "has_data") and reader.has_data():
            return None
        buffer = getattr(parser, "_buffer", None)
        if buffer:
            return None
        return stream


async def _read_raw(conn: Any) -> Any:
    try:
        return await conn.read_response(disable_decoding=True)
    except redis.exceptions.ResponseError as exc:
        return exc


async def _read_pop(conn: Any, stream: Any, pops: PopState, req: Recv) -> Any:
    steps = pops.answer(req)
    result: Any = None
    timeout = getattr(conn, "socket_timeout", None)
    while True:
        try:
            need = steps.send(result)
        except StopIteration as done:
            return done.value
        result = None
        if need is FILL:
            try:
                data = await asyncio.wait_for(stream.read(_RECV_SIZE), timeout)
            except asyncio.TimeoutError:
                raise redis.exceptions.TimeoutError("Timeout reading from %s" % (conn,)) from None
            if not data:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            pops.reader.feed(data)
        elif need is READ:
            result = await _read_raw(conn)
        else:
            await conn.send_packed_command([_joined(need)], check_health=False)


async def _close(conn: Any) -> None:
    if conn is not None:
        await conn.disconnect()


def _abandon(conn: Any) -> None:
    """Close a connection without awaiting (we may be cancelled)."""
    if conn is None:
        return
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        writer.close()
    conn._reader = conn._writer = None
    parser = getattr(conn, "_parser", None)
    if parser is not None and hasattr(parser, "on_disconnect"):
        parser.on_disconnect()


class AsyncClientDriver(_AsyncBase):
    """Run plans through an asyncio client's public ``execute_command``."""

    def __init__(self, client: Any, wire: ModuleType) -> None:
        self.client = client
        self.wire = wire

    async def _drive(self, plan: Any, result: List[Any]) -> AsyncIterator[Any]:  # type: ignore[override]
        steps = _Plan(plan)
        queued: List[Any] = []
        pops = PopState(self.wire, False, memoryview(b""))
        try:
            while True:
                try:
                    req = steps.next()
                except StopIteration as stop:
                    result.append(stop.value)
                    return
                kind = type(req)
                if kind is Deliver:
                    try:
                        yield req.value
                    except GeneratorExit:
                        steps.error = StopDelivery()
                    continue
                try:
                    if kind is Send:
                        queued.extend(req.cmds)
                    elif kind is Recv:
                        steps.answer = await self._answer(queued, pops, req)
                    elif kind is Sleep:
                        await asyncio.sleep(req.seconds)
                    elif kind is Drop:
                        queued.clear()
                except NETWORK_ERRORS as exc:
                    queued.clear()
                    steps.error = exc
        finally:
            plan.close()

    async def _answer(self, queued: List[Any], pops: PopState, req: Recv) -> Any:
        if req.mode == RAW:
            return await self._execute(queued.pop(0))
        steps = pops.answer(req)
        result: Any = None
        while True:
            try:
                need = steps.send(result)
            except StopIteration as done:
                return done.value
            result = await self._execute(queued.pop(0)) if need is READ else None
            if isinstance(need, list):
                queued.extend(need)

    async def _execute(self, cmd: Any) -> Any:
        try:
            return as_bytes(await self.client.execute_command(*cmd.args))
        except redis.exceptions.ResponseError as exc:
            return exc


def make_async_driver(client: Any, wire: ModuleType, socket_pops: bool) -> _AsyncBase:
    """Pick :class:`AsyncDriver` for ``redis.asyncio`` clients it can drive."""
    pool = getattr(client, "connection_pool", None)
    conn_cls = getattr(pool, "connection_class", None)
    if (
        isinstance(client, redis.asyncio.Redis)
        and isinstance(pool, redis.asyncio.ConnectionPool)
        and conn_cls is not None
        and conn_cls.__module__.startswith("redis.")
        and hasattr(conn_cls, "send_packed_command")
    ):
        return AsyncDriver(client, wire, socket_pops)
    return AsyncClientDriver(client, wire)
