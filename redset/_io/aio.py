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
import sys
from typing import Any, AsyncGenerator, AsyncIterator, List, Optional, Union

import redis
import redis.asyncio

from redset._codec import Codec
from redset._core.steps import (
    NETWORK_ERRORS, RAW, Cancelled, Deliver, Drop, NotSent, Recv, Send, Sleep, StopDelivery,
)
from redset._io.planrun import PlanRun, client_ops, joined
from redset._io.replies import FILL, READ, PopState, as_bytes, parser_holds_data

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # redis-py depends on async-timeout before Python 3.11.3
    from async_timeout import timeout as _timeout  # type: ignore[no-redef, import-not-found, unused-ignore]

__all__ = ["AsyncDriver", "AsyncClientDriver", "make_async_driver"]

_RECV_SIZE = 65536


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
        st = PlanRun(plan)
        try:
            for req in st.requests():
                if type(req) is not Deliver:
                    await self._perform_or_finish(st, req)
                    continue
                try:
                    yield req.value
                except GeneratorExit:  # the caller stopped iterating
                    st.error = StopDelivery()
            result.append(st.result)
        except BaseException:
            # Failed or cancelled mid-command: what is left on the
            # connection belongs to no one. Close it before it goes back.
            await self._abandon(st)
            raise
        finally:
            await self._done(st)
            plan.close()

    async def _perform_or_finish(self, st: PlanRun, req: Any) -> None:
        try:
            await self._perform(st, req)
        except asyncio.CancelledError:
            # Let the plan finish what it started (read a pop's reply and
            # put the items back) in a task of its own, shielded from
            # further cancellation; then go on.
            st.error = Cancelled()
            await asyncio.shield(asyncio.ensure_future(self._finish(st)))
            raise

    async def _finish(self, st: PlanRun) -> None:
        """Run a cancelled plan to its end; it re-raises Cancelled last."""
        try:
            for req in st.requests():
                if type(req) is Deliver:
                    st.error = StopDelivery()
                else:
                    await self._perform(st, req)
        except BaseException:  # noqa: BLE001 - nothing to report to: the caller was cancelled
            pass
        finally:
            await self._abandon(st)
            await self._done(st)

    async def _perform(self, st: PlanRun, req: Any) -> None:
        """Do one request's I/O; set ``st.answer``, or ``st.error`` for the plan."""
        raise NotImplementedError

    async def _abandon(self, st: PlanRun) -> None:
        """An exception leaves the plan: drop what no one will read."""

    async def _done(self, st: PlanRun) -> None:
        """The plan is over: give its connection back."""


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

    async def _abandon(self, st: PlanRun) -> None:
        if st.unread:
            await self._drop(st, nowait=True)

    async def _done(self, st: PlanRun) -> None:
        if st.conn is not None:
            if st.pops is not None and st.pops.dirty():
                _close_nowait(st.conn)
            await self._release(st.conn)
            st.conn = None

    async def _perform(self, st: PlanRun, req: Any) -> None:
        kind = type(req)
        try:
            if kind is Send:
                if st.conn is None:
                    try:
                        st.conn = await self._acquire()
                    except NETWORK_ERRORS as exc:
                        raise NotSent(exc) from exc
                st.unread += len(req.cmds)
                await _send(st.conn, joined(req.cmds))
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

    async def _drop(self, st: PlanRun, nowait: bool = False) -> None:
        conn, st.conn, st.pops, st.stream = st.conn, None, None, None
        st.unread = 0
        if conn is not None:
            if nowait:
                _close_nowait(conn)
            else:
                await conn.disconnect()
            await self._release(conn)

    def _stream_of(self, conn: Any) -> Any:
        """The connection's stream if pops can be read from it directly, else None."""
        if not self.socket_pops:
            return None
        stream = getattr(conn, "_reader", None)
        if stream is None or not hasattr(stream, "read") or parser_holds_data(conn):
            return None
        return stream


async def _send(conn: Any, data: bytes) -> None:
    """Write ``data`` on the connection.

    Straight to its stream writer when it is open, waiting for the socket
    only when the transport could not take it all at once: redis-py's
    ``send_packed_command`` wraps every write in ``wait_for`` (a task per
    command). A connection that is closed or closing goes through
    redis-py, which reconnects or raises its own errors.
    """
    writer = getattr(conn, "_writer", None)
    if writer is None or writer.transport is None or writer.transport.is_closing():
        await conn.send_packed_command([data], check_health=False)
        return
    writer.write(data)
    if writer.transport.get_write_buffer_size():
        timeout = getattr(conn, "socket_timeout", None)
        try:
            if timeout is None:
                await writer.drain()
            else:
                async with _timeout(timeout):
                    await writer.drain()
        except asyncio.TimeoutError:
            raise redis.exceptions.TimeoutError("Timeout writing to %s" % (conn,)) from None


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


async def _read_pop(st: PlanRun, req: Recv) -> Any:
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
                if timeout is None or getattr(stream, "_buffer", None):
                    # Bytes already buffered: read() returns without waiting.
                    data = await stream.read(_RECV_SIZE)
                else:
                    # A deadline on this task, not wait_for(): that wraps
                    # every read in a task of its own (a tenth of a drain's
                    # CPU on Python 3.11).
                    async with _timeout(timeout):
                        data = await stream.read(_RECV_SIZE)
            except asyncio.TimeoutError:
                raise redis.exceptions.TimeoutError("Timeout reading from %s" % (conn,)) from None
            if not data:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            pops.reader.feed(data)
        elif need is READ:
            result = await _read_raw(conn)
        else:
            st.unread += len(need)
            await _send(conn, joined(need))


def _close_nowait(conn: Any) -> None:
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

    async def _perform(self, st: PlanRun, req: Any) -> None:
        try:
            for op in client_ops(st, req, self.wire):
                st.reply = await (asyncio.sleep(op) if type(op) is float else self._execute(op))
        except NETWORK_ERRORS as exc:
            st.queued.clear()
            st.error = exc

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
