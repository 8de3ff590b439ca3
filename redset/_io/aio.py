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

from redset._codec import Codec
from redset._core import kinds
from redset._core.steps import (
    RAW, Cancelled, Deliver, Drop, NotSent, Recv, Send, Sleep, StopDelivery,
)
from redset._io.clientlib import REDIS_PY, ClientLib, lib_of
from redset._io.planrun import PlanRun, client_ops, joined
from redset._io.replies import FILL, READ, PopState, as_bytes, parser_holds_data, parser_is_native

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # redis-py depends on async-timeout before Python 3.11.3
    from async_timeout import timeout as _timeout  # type: ignore[no-redef, import-not-found, unused-ignore]

__all__ = ["AsyncDriver", "AsyncClientDriver", "make_async_driver"]

_RECV_SIZE = 65536


class _AsyncBase:
    wire: Codec
    lib: ClientLib = REDIS_PY

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
        except BaseException as exc:
            # Failed or cancelled mid-command: what is left on the
            # connection belongs to no one. Close it before it goes back.
            await self._abandon(st)
            self.lib.adapt(exc)
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
    """Drive a pooled ``redis.asyncio`` (or ``valkey.asyncio``) connection with pre-encoded RESP bytes."""

    def __init__(self, client: Any, wire: Codec, socket_pops: Optional[bool], lib: ClientLib = REDIS_PY) -> None:
        self.client = client
        self.lib = lib
        self.pool: Any = getattr(client, "connection_pool", None)  # get_connection() is untyped in redis.asyncio
        self.wire = wire
        self.socket_pops = socket_pops
        self._timeout: Union[float, None, bool] = False

    async def _acquire(self, st: Optional[PlanRun] = None) -> Any:
        single = getattr(self.client, "connection", None)
        if single is not None:
            await single.connect()
            return single
        try:
            return await self.pool.get_connection()
        except TypeError:  # redis-py < 5.3 requires a command name
            return await self.pool.get_connection("_")

    async def _release(self, conn: Any, st: Optional[PlanRun] = None) -> None:
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
            await self._release(st.conn, st)
            st.conn = None

    async def _perform(self, st: PlanRun, req: Any) -> None:
        kind = type(req)
        try:
            if kind is Send:
                if st.conn is None:
                    try:
                        st.conn = await self._acquire(st)
                    except kinds.NETWORK as exc:
                        raise NotSent(exc) from exc
                st.unread += len(req.cmds)
                await _send(st.conn, joined(req.cmds), self.lib)
            elif kind is Recv:
                if req.mode == RAW:
                    st.answer = await _read_raw(st.conn)
                else:
                    if st.pops is None:
                        st.stream = self._stream_of(st.conn)
                        st.pops = PopState(self.wire, st.stream is not None, memoryview(b""), self.lib)
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
        except kinds.NETWORK as exc:
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
            await self._release(conn, st)

    def _stream_of(self, conn: Any) -> Any:
        """The connection's stream if pops can be read from it directly, else None."""
        if self.socket_pops is False or (self.socket_pops is None and parser_is_native(conn)):
            return None
        stream = getattr(conn, "_reader", None)
        if stream is None or not hasattr(stream, "read") or parser_holds_data(conn):
            return None
        return stream


async def _send(conn: Any, data: bytes, lib: ClientLib) -> None:
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
            raise lib.TimeoutError("Timeout writing to %s" % (conn,)) from None


async def _read_raw(conn: Any) -> Any:
    """Read one reply with the connection's parser; an error reply is returned.

    ``disconnect_on_error=False``: redis-py would otherwise close the
    connection when the read is cancelled, and the reply of a pop that did
    happen would be lost with it. The driver decides when to close (see
    :meth:`AsyncDriver._drive`).
    """
    try:
        return await conn.read_response(disable_decoding=True, disconnect_on_error=False)
    except kinds.RESPONSE as exc:
        return exc


async def _read_pop(st: PlanRun, req: Recv) -> Any:
    conn, stream, pops = st.conn, st.stream, st.pops
    assert pops is not None
    lib = pops.lib
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
            fill = _direct_fill(stream, lib)
            if fill is not None:
                await fill.wait(st, req, timeout)
                continue
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
                raise lib.TimeoutError("Timeout reading from %s" % (conn,)) from None
            if not data:
                raise lib.ConnectionError("Connection closed by server.")
            pops.reader.feed(data)
        elif need is READ:
            result = await _read_raw(conn)
        else:
            st.unread += len(need)
            await _send(conn, joined(need), lib)


class _DirectFill(asyncio.BufferedProtocol):
    """Read a pop reply from the socket straight into the ``PopReader``.

    Installed on the connection's transport in place of its stream's
    protocol for one wait: the event loop reads into our buffer, we feed the
    reader and wake the waiting task only when the reply is complete (or its
    header, when the next request waits for it), not once per chunk as a
    ``StreamReader.read`` would (a 1,000-item reply arrives in ~5 chunks,
    and each wake-up of a task costs about as much as parsing 150 items).
    The stream's protocol is put back before the task runs again; EOF, a
    lost connection and flow control are passed on to it.
    """

    __slots__ = ("transport", "stream_protocol", "lib", "run", "req", "waiter", "view")

    def __init__(self, transport: Any, stream_protocol: Any, lib: ClientLib) -> None:
        self.transport = transport
        self.lib = lib
        self.stream_protocol = stream_protocol
        self.run: Optional[PlanRun] = None
        self.req: Optional[Recv] = None
        self.waiter: Optional["asyncio.Future[Optional[BaseException]]"] = None
        self.view = memoryview(bytearray(_RECV_SIZE))

    async def wait(self, st: PlanRun, req: Recv, timeout: Optional[float]) -> None:
        """Wait until the reply in ``st.pops.reader`` is complete."""
        self.run = st
        self.req = req
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self.transport.set_protocol(self)
        try:
            if timeout is None:
                error = await waiter
            else:
                try:
                    async with _timeout(timeout):
                        error = await waiter
                except asyncio.TimeoutError:
                    raise self.lib.TimeoutError("Timeout reading from %s" % (st.conn,)) from None
        finally:
            self._restore()
        if error is not None:
            raise error

    def _restore(self) -> None:
        self.waiter = self.run = self.req = None
        if self.transport.get_protocol() is self:
            self.transport.set_protocol(self.stream_protocol)

    def _wake(self, error: Optional[BaseException]) -> None:
        waiter = self.waiter
        self._restore()
        if waiter is not None and not waiter.done():
            waiter.set_result(error)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        st = self.run
        if st is None:  # pragma: no cover - the transport called us after _restore
            return
        pops = st.pops
        assert pops is not None
        reader = pops.reader
        reader.feed(self.view[:nbytes])
        if not pops.decided:
            # The next request goes out from here, as soon as the header
            # says so: the server starts on it without waiting for this
            # task to be scheduled. Sent and counted in one step, so a
            # cancellation later sees it in flight.
            try:
                cmds = pops.ahead_cmds(self.req)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - raised in the waiting task
                self._wake(exc)
                return
            if cmds:
                st.unread += len(cmds)
                self.transport.write(joined(cmds))
        if reader.complete():
            self._wake(None)

    def eof_received(self) -> Optional[bool]:
        self._wake(self.lib.ConnectionError("Connection closed by server."))
        return self.stream_protocol.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._wake(self.lib.ConnectionError("Connection lost: %s" % (exc or "closed",)))
        self.stream_protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.stream_protocol.pause_writing()

    def resume_writing(self) -> None:
        self.stream_protocol.resume_writing()


#: CPython's plain socket transport (a private class: looked up, not imported).
_PLAIN_TRANSPORT: Any = getattr(asyncio.selector_events, "_SelectorSocketTransport", None)


def _direct_fill(stream: Any, lib: ClientLib) -> Optional[_DirectFill]:
    """A :class:`_DirectFill` for this stream, or None to read it as a stream.

    Only on CPython's own socket transport (not TLS, not uvloop), with
    nothing buffered in the stream, no EOF or error recorded and reading on.
    One instance per transport is kept on the stream.
    """
    if type(stream) is not asyncio.StreamReader:
        return None
    if getattr(stream, "_buffer", True) or stream.at_eof() or stream.exception():
        return None
    transport: Any = getattr(stream, "_transport", None)
    if _PLAIN_TRANSPORT is None or type(transport) is not _PLAIN_TRANSPORT or transport.is_closing() or not transport.is_reading():
        return None
    fill: Optional[_DirectFill] = getattr(stream, "_redset_fill", None)
    if fill is None or fill.transport is not transport:
        protocol = transport.get_protocol()
        if not isinstance(protocol, asyncio.StreamReaderProtocol):
            return None
        fill = _DirectFill(transport, protocol, lib)
        stream._redset_fill = fill  # type: ignore[attr-defined]
    return fill


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
        self.lib = lib_of(client) or REDIS_PY

    async def _perform(self, st: PlanRun, req: Any) -> None:
        try:
            for op in client_ops(st, req, self.wire):
                st.reply = await (asyncio.sleep(op) if type(op) is float else self._execute(op))
        except kinds.NETWORK as exc:
            st.queued.clear()
            st.error = exc

    async def _execute(self, cmd: Any) -> Any:
        try:
            return as_bytes(await self.client.execute_command(*cmd.args))
        except kinds.RESPONSE as exc:
            return exc


def make_async_driver(client: Any, wire: Codec, socket_pops: Optional[bool],
                      key: Optional[bytes] = None) -> _AsyncBase:
    """Pick :class:`AsyncDriver` for the ``redis.asyncio`` and ``valkey.asyncio``
    clients it can drive, :class:`~redset._io.aio_cluster.AsyncClusterDriver`
    for their cluster clients (``key``: the key whose slot the set's commands are for)."""
    if key is not None:
        from redset._io.aio_cluster import AsyncClusterDriver, async_cluster_lib

        cluster = async_cluster_lib(client)
        if cluster is not None:
            return AsyncClusterDriver(client, wire, socket_pops, cluster, key)
    pool = getattr(client, "connection_pool", None)
    conn_cls = getattr(pool, "connection_class", None)
    lib = lib_of(client)
    if lib is not None and conn_cls is not None:
        client_cls, pool_cls = lib.asyncio_classes()
        if (
            isinstance(client, client_cls)
            and isinstance(pool, pool_cls)
            and lib.owns(conn_cls)
            and hasattr(conn_cls, "send_packed_command")
        ):
            return AsyncDriver(client, wire, socket_pops, lib)
    return AsyncClientDriver(client, wire)
