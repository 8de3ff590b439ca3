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
from typing import Any, AsyncGenerator, AsyncIterator, List, Optional, Union

import redis
import redis.asyncio

from redset._codec import Codec

from redset._core.steps import (
    NETWORK_ERRORS, RAW, Cancelled, Deliver, Drop, NotSent, Recv, Send, Sleep, StopDelivery,
)
from redset._io.replies import FILL, READ, PopState, as_bytes

def _joined(cmds: Any) -> bytes:
    """One buffer for one write: redis-py writes each list element with its own sendall()."""
    return cmds[0].packed if len(cmds) == 1 else b"".join([c.packed for c in cmds])


__all__ = ["AsyncDriver", "AsyncClientDriver", "make_async_driver"]

_RECV_SIZE = 65536


class _Plan:
    """A plan being run: its stepping, and the connection it holds."""

    __slots__ = ("plan", "answer", "error", "conn", "stream", "pops", "unread")

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.answer: Any = None
        self.error: Optional[BaseException] = None
        self.conn: Any = None
        self.stream: Any = None
        self.pops: Optional[PopState] = None
        self.unread = 0  # replies sent for and not read: the connection is clean at 0

    def next(self) -> Any:
        answer, error = self.answer, self.error
        self.answer = self.error = None
        return self.plan.send(answer) if error is None else self.plan.throw(error)


class _AsyncBase:
    wire: Codec

    async def run(self, plan: Any) -> Any:
        """Run a plan to its end and return its result."""
        result: List[Any] = []
        steps = self._drive(plan, result)
        async for _ in steps:
            await steps.aclose()
            raise RuntimeError("a plan delivered values to run(); use iterate()")
        return result[0]

    def iterate(self, plan: Any) -> AsyncIterator[Any]:
        """Run an iterating plan, yielding what it delivers."""
        return self._drive(plan, [])

    async def socket_timeout(self) -> Optional[float]:
        return None

    async def _drive(self, plan: Any, result: List[Any]) -> AsyncGenerator[Any, None]:
        raise NotImplementedError
        yield  # an async generator, like the drivers' own


class AsyncDriver(_AsyncBase):
    """Drive a pooled ``redis.asyncio`` connection with pre-encoded RESP bytes."""

    def __init__(self, client: "redis.asyncio.Redis", wire: Codec, socket_pops: bool) -> None:
        self.client = client
        self.pool: Any = client.connection_pool  # get_connection() is untyped in redis.asyncio
        self.wire = wire
        self.socket_pops = socket_pops
        self._timeout: Union[float, None, bool] = False

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
        return None if isinstance(self._timeout, bool) else self._timeout

    async def _drive(self, plan: Any, result: List[Any]) -> AsyncGenerator[Any, None]:
        st = _Plan(plan)
        try:
            while True:
                try:
                    req = st.next()
                except StopIteration as stop:
                    result.append(stop.value)
                    return
                if type(req) is Deliver:
                    try:
                        yield req.value
                    except GeneratorExit:
                        st.error = StopDelivery()
                    continue
                try:
                    await self._perform(st, req)
                except asyncio.CancelledError:
                    # Let the plan finish what it started (read a pop's
                    # reply and put the items back) in a task of its own,
                    # shielded from further cancellation; then go on.
                    st.error = Cancelled()
                    await asyncio.shield(asyncio.ensure_future(self._finish(st)))
                    raise
        except BaseException:
            # Failed or cancelled mid-command: what is left on the
            # connection belongs to no one. Close it before it goes back.
            if st.unread:
                await self._drop(st, abandon=True)
            raise
        finally:
            if st.conn is not None:
                if st.pops is not None and st.pops.dirty():
                    _abandon(st.conn)
                await self._release(st.conn)
                st.conn = None
            plan.close()

    async def _finish(self, st: "_Plan") -> None:
        """Run a cancelled plan to its end; it re-raises Cancelled last."""
        try:
            while True:
                try:
                    req = st.next()
                except (StopIteration, Cancelled):
                    return
                if type(req) is Deliver:
                    st.error = StopDelivery()
                    continue
                await self._perform(st, req)
        except BaseException:  # noqa: BLE001 - nothing to report to: the caller was cancelled
            pass
        finally:
            if st.unread:
                await self._drop(st, abandon=True)
            elif st.conn is not None:
                await self._release(st.conn)
                st.conn = None

    async def _perform(self, st: "_Plan", req: Any) -> None:
        """Do one request's I/O; a network error is handed to the plan."""
        kind = type(req)
        try:
            if kind is Send:
                if st.conn is None:
                    try:
                        st.conn = await self._acquire()
                    except NETWORK_ERRORS as exc:
                        raise NotSent(exc) from exc
                st.unread += len(req.cmds)
                await st.conn.send_packed_command([_joined(req.cmds)], check_health=False)
            elif kind is Recv:
                if req.mode == RAW:
                    st.answer = await _read_raw(st.conn)
                else:
                    if st.pops is None:
                        st.stream = self._stream_of(st.conn)
                        st.pops = PopState(self.wire, st.stream is not None, memoryview(b""))
                    st.answer = await _read_pop(st, req)
                st.unread -= 1
            elif kind is Sleep:
                await asyncio.sleep(req.seconds)
            elif kind is Drop:
                await self._drop(st)
            else:
                raise TypeError("a plan yielded %r" % (req,))
        except NotSent as exc:
            st.error = exc
        except NETWORK_ERRORS as exc:
            await self._drop(st)
            st.error = exc

    async def _drop(self, st: "_Plan", abandon: bool = False) -> None:
        conn, st.conn, st.pops, st.stream = st.conn, None, None, None
        st.unread = 0
        if conn is not None:
            if abandon:
                _abandon(conn)
            else:
                await conn.disconnect()
            await self._release(conn)

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
    """Read one reply with the connection's parser; an error reply is returned.

    ``disconnect_on_error=False``: redis-py would otherwise close the
    connection when the read is cancelled, and the reply of a pop that did
    happen would be lost with it. The driver decides when to close (see
    :meth:`AsyncDriver._drive`).
    """
    try:
        return await conn.read_response(disable_decoding=True, disconnect_on_error=False)
    except redis.exceptions.ResponseError as exc:
        return exc


async def _read_pop(st: "_Plan", req: Recv) -> Any:
    conn, stream, pops = st.conn, st.stream, st.pops
    assert pops is not None
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
            st.unread += len(need)
            await conn.send_packed_command([_joined(need)], check_health=False)


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

    def __init__(self, client: Any, wire: Codec) -> None:
        self.client = client
        self.wire = wire

    async def _drive(self, plan: Any, result: List[Any]) -> AsyncGenerator[Any, None]:
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


def make_async_driver(client: Any, wire: Codec, socket_pops: bool) -> _AsyncBase:
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
