"""The sync drivers: run plans on a redis-py client, moving bytes only.

:class:`SyncDriver` takes a connection from a redis-py client's own pool (so
AUTH, db, TLS, client name and timeouts apply), writes the plan's packed RESP
bytes and reads replies: pop replies straight from the socket into the
codec's ``PopReader`` (which decodes members as it parses) when the
connection's own parser holds nothing, anything else with redis-py's
``read_response``. :class:`ClientDriver` runs the same plans through a
client's public ``execute_command`` (fakeredis, wrappers): correct, not fast.

What may be re-sent is the plan's business; a driver only closes a connection
whose state is unknown: after a network error, and whenever an exception
leaves the plan (a half-read reply would poison the next user).
"""
from __future__ import annotations

import time
from typing import Any, Generator, Iterator, List, Optional, Union


from redset._codec import Codec
from redset._core import kinds
from redset._core.steps import RAW, Deliver, Drop, NotSent, Recv, Send, Sleep, StopDelivery
from redset._io.clientlib import REDIS_PY, ClientLib, lib_of
from redset._io.planrun import PlanRun, client_ops, joined
from redset._io.replies import FILL, READ, PopState, as_bytes, parser_holds_data, parser_is_native

__all__ = ["SyncDriver", "ClientDriver", "make_driver"]

# Bytes per recv_into() of a pop reply: hiredis-sized reads, one buffer reused.
_RECV_SIZE = 65536


class _Driver:
    """What both sync drivers share: stepping a plan."""

    wire: Codec
    lib: ClientLib = REDIS_PY

    def run(self, plan: Any) -> Any:
        """Run a plan to its end and return its result."""
        steps = self._drive(plan)
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
        steps.close()
        raise RuntimeError("a plan delivered values to run(); use iterate()")

    def iterate(self, plan: Any) -> Iterator[Any]:
        """Run an iterating plan, yielding what it delivers."""
        return self._drive(plan)

    def socket_timeout(self) -> Optional[float]:
        """The client's read timeout, which a blocking command must stay under."""
        return None

    def _drive(self, plan: Any) -> Generator[Any, None, Any]:
        st = PlanRun(plan)
        send, throw, perform = plan.send, plan.throw, self._perform
        try:
            while True:
                # PlanRun.requests(), inline: one generator less per request.
                answer, error = st.answer, st.error
                st.answer = st.error = None
                try:
                    req = send(answer) if error is None else throw(error)
                except StopIteration as stop:
                    st.result = stop.value
                    return st.result
                if type(req) is not Deliver:
                    perform(st, req)
                    continue
                try:
                    yield req.value
                except GeneratorExit:  # the caller stopped iterating
                    st.error = StopDelivery()
        except BaseException as exc:
            self._abandon(st)
            self.lib.adapt(exc)
            raise
        finally:
            self._done(st)
            plan.close()

    def _perform(self, st: PlanRun, req: Any) -> None:
        """Do one request's I/O; set ``st.answer``, or ``st.error`` for the plan."""
        raise NotImplementedError

    def _abandon(self, st: PlanRun) -> None:
        """An exception leaves the plan: drop what no one will read."""

    def _done(self, st: PlanRun) -> None:
        """The plan is over: give its connection back."""


class SyncDriver(_Driver):
    """Drive a pooled redis-py (or valkey-py) connection with pre-encoded RESP bytes."""

    def __init__(self, client: Any, wire: Codec, socket_pops: Optional[bool], lib: ClientLib = REDIS_PY) -> None:
        self.client = client
        self.lib = lib
        self.pool: Any = getattr(client, "connection_pool", None)
        self.wire = wire
        self.socket_pops = socket_pops
        self._buffers: List[memoryview] = []
        self._timeout: Union[float, None, bool] = False

    # -- connections -------------------------------------------------------
    def _acquire(self, st: Optional[PlanRun] = None) -> Any:
        """A connection for ``st`` (or for a quick look, without one)."""
        single = getattr(self.client, "connection", None)
        if single is not None:  # single_connection_client=True
            return single
        try:
            return self.pool.get_connection()
        except TypeError:  # redis-py < 5.3 requires a command name
            return self.pool.get_connection("_")

    def _release(self, conn: Any, st: Optional[PlanRun] = None) -> None:
        if conn is not getattr(self.client, "connection", None):
            self.pool.release(conn)

    def socket_timeout(self) -> Optional[float]:
        # Read it off a connection: redis-py 8 applies a default read timeout
        # (5 s) that is not in the pool's connection_kwargs.
        if self._timeout is False:
            conn = self._acquire()
            try:
                value = getattr(conn, "socket_timeout", None)
            finally:
                self._release(conn)
            if value is None:
                value = self.pool.connection_kwargs.get("socket_timeout")
            self._timeout = float(value) if value else None
        return None if isinstance(self._timeout, bool) else self._timeout

    def _buffer(self) -> memoryview:
        try:
            return self._buffers.pop()
        except IndexError:  # first use, or plans running in several threads
            return memoryview(bytearray(_RECV_SIZE))

    # -- requests ---------------------------------------------------------------
    def _perform(self, st: PlanRun, req: Any) -> None:
        kind = type(req)
        try:
            if kind is Send:
                if st.conn is None:
                    try:
                        st.conn = self._acquire(st)
                    except kinds.NETWORK as exc:
                        raise NotSent(exc) from exc
                st.unread += len(req.cmds)
                st.conn.send_packed_command([joined(req.cmds)], check_health=False)
            elif kind is Recv:
                if req.mode == RAW:
                    st.answer = _read_raw(st.conn)
                else:
                    if st.pops is None:
                        st.stream = self._socket_of(st.conn)
                        st.pops = PopState(self.wire, st.stream is not None, self._buffer(), self.lib)
                    st.answer, ahead = self._read_pop(st.conn, st.stream, st.pops, req)
                    st.unread += ahead
                st.unread -= 1
            elif kind is Sleep:
                time.sleep(req.seconds)
            elif kind is Drop:
                self._close(st)
            else:
                raise TypeError("a plan yielded %r" % (req,))
        except NotSent as exc:
            st.error = exc
        except kinds.NETWORK as exc:
            self._close(st)
            st.error = exc

    def _abandon(self, st: PlanRun) -> None:
        if st.unread:  # a reply is still coming: nobody else may read it
            self._close(st)

    def _done(self, st: PlanRun) -> None:
        if st.conn is not None:
            if st.pops is not None and st.pops.dirty():
                st.conn.disconnect()  # bytes no request asked for
            self._release(st.conn, st)
            st.conn = None
        self._recycle(st)

    def _read_pop(self, conn: Any, sock: Any, pops: PopState, req: Recv) -> Any:
        """The answer to ``req``, and how many commands were sent ahead meanwhile."""
        if sock is not None and req.ahead is None:
            # Straight from the socket with nothing to send ahead: the steps
            # of pops.answer() without its generator.
            reader, raw, leases = pops.start(req)
            failures: List[Any] = []
            got = reader.gets(failures, raw, leases)
            if got is False:
                view, feed = pops.view, reader.feed
                while got is False:
                    n = sock.recv_into(view)
                    if not n:
                        raise self.lib.ConnectionError("Connection closed by server.")
                    feed(view[:n])
                    got = reader.gets(failures, raw, leases)
            return pops.finish(req, got, failures, raw), 0
        steps = pops.answer(req)
        result: Any = None
        ahead = 0
        while True:
            try:
                need = steps.send(result)
            except StopIteration as done:
                return done.value, ahead
            result = None
            if need is FILL:
                n = sock.recv_into(pops.view)
                if not n:
                    raise self.lib.ConnectionError("Connection closed by server.")
                pops.reader.feed(pops.view[:n])
            elif need is READ:
                result = _read_raw(conn)
            else:
                ahead += len(need)
                conn.send_packed_command([joined(need)], check_health=False)

    def _close(self, st: PlanRun) -> None:
        """Close the plan's connection: its state is unknown."""
        conn, st.conn, st.stream, st.unread = st.conn, None, None, 0
        if conn is not None:
            conn.disconnect()
            self._release(conn, st)
        self._recycle(st)

    def _recycle(self, st: PlanRun) -> None:
        pops, st.pops = st.pops, None
        if pops is not None and len(self._buffers) < 4:
            self._buffers.append(pops.view)

    def _socket_of(self, conn: Any) -> Any:
        """The connection's socket if pops can be read from it directly, else None."""
        if self.socket_pops is False or conn is None:
            return None
        if self.socket_pops is None and parser_is_native(conn):
            return None
        sock = getattr(conn, "_sock", None)
        if sock is None or not hasattr(sock, "recv_into") or parser_holds_data(conn):
            return None
        return sock


def _read_raw(conn: Any) -> Any:
    """Read one reply with the connection's parser; an error reply is returned, not raised."""
    try:
        return conn.read_response(disable_decoding=True)
    except kinds.RESPONSE as exc:
        return exc


class ClientDriver(_Driver):
    """Run plans through a client's public ``execute_command``.

    Commands run one by one when their reply is asked for. Retries follow the
    client's own configuration too, which for redis-py may re-send a pop
    after a connection error: use a plain ``redis.Redis`` for the
    at-most-once guarantee of :class:`SyncDriver`.
    """

    def __init__(self, client: Any, wire: Codec) -> None:
        self.client = client
        self.wire = wire
        self.lib = lib_of(client) or REDIS_PY

    def _perform(self, st: PlanRun, req: Any) -> None:
        try:
            for op in client_ops(st, req, self.wire):
                if type(op) is float:
                    time.sleep(op)
                else:
                    st.reply = self._execute(op)
        except kinds.NETWORK as exc:
            st.queued.clear()
            st.error = exc

    def _execute(self, cmd: Any) -> Any:
        try:
            return as_bytes(self.client.execute_command(*cmd.args))
        except kinds.RESPONSE as exc:
            return exc


def make_driver(client: Any, wire: Codec, socket_pops: Optional[bool], key: Optional[bytes] = None) -> _Driver:
    """Pick :class:`SyncDriver` for the redis-py and valkey-py clients it can
    drive, :class:`~redset._io.cluster.ClusterDriver` for their cluster
    clients (``key``: the key whose slot every command of the set is for)."""
    if key is not None:
        from redset._io.cluster import cluster_lib

        lib = cluster_lib(client)
        if lib is not None:
            from redset._io.cluster import ClusterDriver

            return ClusterDriver(client, wire, socket_pops, lib, key)
    pool = getattr(client, "connection_pool", None)
    conn_cls = getattr(pool, "connection_class", None)
    lib = lib_of(client)
    if (
        lib is not None
        and isinstance(client, lib.Redis)
        and isinstance(pool, lib.ConnectionPool)
        and conn_cls is not None
        and lib.owns(conn_cls)
        and hasattr(conn_cls, "send_packed_command")
    ):
        return SyncDriver(client, wire, socket_pops, lib)
    return ClientDriver(client, wire)
