"""Moving encoded commands to the server and replies back.

Two transports share one interface:

* :class:`DirectTransport` drives a connection taken from a redis-py client's
  own pool (so AUTH, db, TLS, client name and timeouts apply), writes packed
  RESP bytes with ``send_packed_command`` and reads raw replies (hiredis when
  installed) with ``read_response(disable_decoding=True)``. It pipelines and
  streams, and it decides retries itself: commands that are safe to repeat
  are re-sent once after a connection error; a pop never is.
  Pops (ZPOPMIN and the pop scripts) are read straight from the socket
  by the codec's ``PopReader``, which decodes members while it parses.
* :class:`ClientTransport` goes through the client's public
  ``execute_command``/``pipeline`` for anything else (fakeredis, cluster
  clients, wrappers): correct everywhere, not fast.

Any exception while a connection is mid-command disconnects it before it goes
back to the pool: a half-written command or an unread reply would poison it.
"""
from __future__ import annotations

import inspect
import os
import time
from collections import deque
from types import ModuleType
from typing import Any, Callable, Deque, Generator, Iterable, List, Optional, Sequence, Tuple

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import BusyLoadingError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # redis-py 5+
    from redis._parsers import BaseParser as _BaseParser
except ImportError:  # pragma: no cover - redis-py 4.x
    from redis.connection import BaseParser as _BaseParser

from redset import scripts
from redset.exceptions import OutcomeUnknown, PopOutcomeUnknown

__all__ = ["Transport", "DirectTransport", "ClientTransport", "make_transport", "Chunk"]

_NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

# A chunk of input for add_many: (items, scores, index of items[0] in the input).
Chunk = Tuple[Sequence[Any], Sequence[Any], int]

# How many ZADD chunks may be in flight while the next is encoded.
_ADD_WINDOW = 8
# Re-sends of idempotent commands after a connection error, with backoff.
_SAFE_RETRIES = 2
_RETRY_BACKOFF = 0.05
# A server loading its dataset (after a restart) answers -LOADING: safe
# commands wait for it, polling, up to _LOADING_RETRIES * _LOADING_POLL s.
_LOADING_RETRIES = 100
_LOADING_POLL = 0.1
# How often a script call reloads the script after NOSCRIPT.
_NOSCRIPT_RELOADS = 3
# Bytes per recv_into() of a pop reply: hiredis-sized reads, one buffer reused.
_RECV_SIZE = 65536
# Receive buffers kept for reuse (one per concurrent pop).
_SPARE_BUFFERS = 4

Failures = List[Tuple[bytes, BaseException]]

# Read pops straight from the socket with the codec's PopReader: "1" always,
# "0" never, unset when the codec's reader parses in C (NATIVE_POP_READER).
_SOCKET_POPS = os.environ.get("REDSET_SOCKET_POPS", "")

# redis-py 5+ made parse_error a classmethod; before, it was a plain method
# that reads only the class's EXCEPTION_CLASSES.
_PARSE_ERROR_IS_CLASSMETHOD = isinstance(inspect.getattr_static(_BaseParser, "parse_error"), classmethod)


def _server_error(message: str) -> ResponseError:
    """The exception redis-py raises for this error reply (NoScriptError, ...)."""
    parse: Any = _BaseParser.parse_error
    if _PARSE_ERROR_IS_CLASSMETHOD:
        return parse(message)
    return parse(_BaseParser, message)  # pragma: no cover


def _as_bytes(value: Any) -> Any:
    """Normalize a reply from a decoding client: str -> UTF-8 bytes, tuples -> lists."""
    if type(value) is str:
        return value.encode("utf-8")
    if isinstance(value, (list, tuple)):
        return [_as_bytes(v) for v in value]
    return value


class Transport:
    """What the sets need from a connection to the server."""

    wire: ModuleType

    def execute(self, args: Sequence[Any], *, pop: bool = False, once: bool = False) -> Any:
        """Run one command and return its raw reply (members as bytes).

        :param pop: the command removes data; after a connection error its
            outcome is unknown and it is not re-sent
            (:class:`~redset.exceptions.PopOutcomeUnknown`).
        :param once: the command must not be repeated either (a lease
            settle, whose repeat would be misreported as stale):
            :class:`~redset.exceptions.OutcomeUnknown`.
        :raises redis.exceptions.ResponseError: the server's error reply.
        """
        raise NotImplementedError

    def execute_many(self, commands: Sequence[Sequence[Any]]) -> List[Any]:
        """Run several commands that are safe to repeat in one round trip.

        :raises redis.exceptions.ResponseError: the first error reply, after
            all replies were read.
        """
        raise NotImplementedError

    def socket_timeout(self) -> Optional[float]:
        """The client's read timeout, which a blocking command must stay under."""
        return None

    def evalsha(self, script: str, keys: Sequence[Any], args: Sequence[Any], *, pop: bool = False,
                once: bool = False) -> Any:
        """Run a script by SHA, loading it first if the server lacks it."""
        sha = scripts.sha1(script)
        cmd = ["EVALSHA", sha, len(keys)] + list(keys) + list(args)
        for _ in range(_NOSCRIPT_RELOADS):
            try:
                return self.execute(cmd, pop=pop, once=once)
            except ResponseError as exc:
                # NOSCRIPT means the script did not run: loading and re-running
                # is safe. The cache can be lost again between the load and the
                # call (a restart or failover while a retry is under way), so
                # this is a bounded loop, not one reload.
                if not _is_noscript(exc):
                    raise
            self.execute(["SCRIPT", "LOAD", script])
        return self.execute(cmd, pop=pop, once=once)

    def zadd_stream(self, key: bytes, flags: Tuple[bytes, ...], chunks: Iterable[Chunk], codec: int,
                    dumps: Optional[Callable[[Any], Any]]) -> int:
        """ZADD every chunk, pipelined; return the sum of the replies."""
        raise NotImplementedError

    def pop_stream(self, make_request: Callable[[], Sequence[Any]], full: Callable[[Any], bool],
                   on_orphan: Optional[Callable[[Any], None]] = None) -> Generator[Any, None, None]:
        """Yield pop replies, keeping the next request in flight while the
        caller handles the current one, until a reply is not ``full``.

        If the caller stops early with a pop in flight, that pop's reply is
        read and passed to ``on_orphan`` (which puts the items back).
        """
        raise NotImplementedError

    def pop_items(self, args: Sequence[Any], codec: int, loads: Optional[Callable[[Any], Any]],
                  failures: Failures, script: Optional[str] = None) -> List[Any]:
        """Run one pop (ZPOPMIN, or EVALSHA of ``script``) and return its members, decoded.

        :param failures: members that fail to decode are appended as
            ``(raw, exception)`` and left out of the result.
        :param script: the source of the script ``args`` calls by SHA: it is
            loaded and the pop re-sent after NOSCRIPT (the script did not run).
        :raises PopOutcomeUnknown: the connection failed after the pop was sent.
        """
        for _ in range(_NOSCRIPT_RELOADS):
            try:
                return self._pop_decoded(args, codec, loads, failures)
            except ResponseError as exc:
                if script is None or not _is_noscript(exc):
                    raise
            self.execute(["SCRIPT", "LOAD", script])
        return self._pop_decoded(args, codec, loads, failures)

    def _pop_decoded(self, args: Sequence[Any], codec: int, loads: Optional[Callable[[Any], Any]],
                     failures: Failures) -> List[Any]:
        reply = self.execute(args, pop=True)
        return self.wire.decode_items(reply, codec, loads, failures, True)

    def pop_batches(self, make_request: Callable[[], Sequence[Any]], batch_size: int, codec: int,
                    loads: Optional[Callable[[Any], Any]],
                    on_orphan: Optional[Callable[[List[Tuple[bytes, float]]], None]] = None,
                    ) -> Generator[Tuple[List[Any], Failures], None, None]:
        """Yield ``(items, failures)`` per pop, keeping the next pop in flight,
        until a pop returns fewer than ``batch_size`` members.

        If the caller stops early with a pop in flight, that pop's members
        are read and passed to ``on_orphan`` as ``(member, score)`` pairs.
        """
        wire = self.wire
        stream = self.pop_stream(
            make_request,
            lambda reply: _pair_count(reply) >= batch_size,
            None if on_orphan is None else (lambda reply: on_orphan(wire.decode_scored(reply))),
        )
        try:
            for reply in stream:
                failures: Failures = []
                yield wire.decode_items(reply, codec, loads, failures, True), failures
        finally:
            stream.close()


class DirectTransport(Transport):
    """Drive a pooled redis-py connection with pre-encoded RESP bytes."""

    def __init__(self, client: "redis.Redis", wire: ModuleType) -> None:
        self.client = client
        self.pool = client.connection_pool
        self.wire = wire
        self._buffers: List[memoryview] = []
        if _SOCKET_POPS in ("0", "1"):
            self.socket_pops = _SOCKET_POPS == "1"
        else:
            self.socket_pops = bool(getattr(wire, "NATIVE_POP_READER", False))

    # -- connections -------------------------------------------------------
    def _acquire(self) -> Any:
        single = getattr(self.client, "connection", None)
        if single is not None:  # single_connection_client=True
            return single
        try:
            return self.pool.get_connection()
        except TypeError:  # redis-py < 5.3 requires a command name
            return self.pool.get_connection("_")

    def _release(self, conn: Any) -> None:
        if conn is not getattr(self.client, "connection", None):
            self.pool.release(conn)

    @staticmethod
    def _read(conn: Any) -> Any:
        """Read one reply; an error reply is returned, not raised."""
        try:
            return conn.read_response(disable_decoding=True)
        except ResponseError as exc:
            return exc

    # -- commands ------------------------------------------------------------
    def execute(self, args: Sequence[Any], *, pop: bool = False, once: bool = False) -> Any:
        return self._round_trip([args], pop=pop, once=once)[0]

    def execute_many(self, commands: Sequence[Sequence[Any]]) -> List[Any]:
        return self._round_trip(commands)

    def _round_trip(self, commands: Sequence[Sequence[Any]], *, pop: bool = False,
                    once: bool = False) -> List[Any]:
        """Send ``commands`` in one write, read one reply each, raise the first
        error reply once all are read (so the connection stays clean).

        After a connection error the batch is re-sent, unless ``pop`` or
        ``once`` says it must not be repeated.
        """
        data = b"".join(self.wire.pack_command(args) for args in commands)
        first = commands[0]
        attempt = 0
        while True:
            conn = self._acquire()  # connect errors here: nothing was sent
            try:
                conn.send_packed_command([data])
                replies = [self._read(conn) for _ in commands]
            except _NETWORK_ERRORS as exc:
                conn.disconnect()
                if pop:
                    raise PopOutcomeUnknown(
                        "connection lost during %s on %r: the server may or may not have "
                        "removed the items, which were not delivered; not retried"
                        % (_name(first[0]), _key_of(first)), _key_of(first)
                    ) from exc
                if once:
                    raise OutcomeUnknown(
                        "connection lost during %s on %r after it was sent: it may or may not "
                        "have been applied; not retried" % (_name(first[0]), _key_of(first)), _key_of(first)
                    ) from exc
                delay = _retry_delay(attempt, exc)
                if delay is None:
                    raise
                attempt += 1
                time.sleep(delay)
                continue
            except BaseException:
                conn.disconnect()
                raise
            finally:
                self._release(conn)
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
            return replies

    def socket_timeout(self) -> Optional[float]:
        # Read it off a connection: redis-py 8 applies a default read timeout
        # (5 s) that is not in the pool's connection_kwargs.
        if not hasattr(self, "_socket_timeout"):
            conn = self._acquire()
            try:
                value = getattr(conn, "socket_timeout", None)
            finally:
                self._release(conn)
            if value is None:
                value = self.pool.connection_kwargs.get("socket_timeout")
            self._socket_timeout = float(value) if value else None
        return self._socket_timeout

    # -- streamed adds ------------------------------------------------------
    def zadd_stream(self, key: bytes, flags: Tuple[bytes, ...], chunks: Iterable[Chunk], codec: int,
                    dumps: Optional[Callable[[Any], Any]]) -> int:
        pack = self.wire.pack_zadd
        total = 0  # members the server reported as added
        acked = 0  # items of chunks whose reply arrived
        unacked = 0  # items of chunks in flight
        attempt = 0
        inflight: Deque[Tuple[bytes, int]] = deque()  # (packed chunk, item count)
        server_error: Optional[ResponseError] = None
        input_error: Optional[BaseException] = None
        it = iter(chunks)
        exhausted = False
        conn = self._acquire()
        try:
            while True:
                try:
                    # Encode and send further chunks while earlier ones are in
                    # flight, so encoding overlaps the server's work. A chunk
                    # is encoded whole before any byte of it is sent.
                    while not exhausted and input_error is None and server_error is None \
                            and len(inflight) < _ADD_WINDOW:
                        chunk = next(it, None)
                        if chunk is None:
                            exhausted = True
                            break
                        items, scores, offset = chunk
                        try:
                            data = pack(key, flags, items, scores, codec, dumps, offset, acked + unacked)
                        except Exception as exc:  # bad input: stop sending, settle what is in flight
                            input_error = exc
                            break
                        inflight.append((data, len(items)))
                        unacked += len(items)
                        conn.send_packed_command([data], check_health=False)
                    if not inflight:
                        break
                    reply = self._read(conn)
                    _, n = inflight.popleft()
                    unacked -= n
                    acked += n
                    if isinstance(reply, ResponseError):
                        server_error = server_error or reply
                    else:
                        total += int(reply)
                except _NETWORK_ERRORS as exc:
                    # ZADD is idempotent: reconnect and re-send every chunk not
                    # yet acknowledged. (The count of new members then misses
                    # those whose first ZADD applied but whose reply was lost.)
                    conn.disconnect()
                    error_now: BaseException = exc
                    while True:
                        delay = _retry_delay(attempt, error_now)
                        if delay is None:
                            raise error_now
                        attempt += 1
                        time.sleep(delay)
                        try:
                            conn.connect()
                            for data, _ in inflight:
                                conn.send_packed_command([data], check_health=False)
                            break
                        except _NETWORK_ERRORS as again:
                            conn.disconnect()
                            error_now = again
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._release(conn)
        if input_error is not None:
            raise input_error
        if server_error is not None:
            raise server_error
        return total

    # -- streamed pops -------------------------------------------------------
    def pop_stream(self, make_request: Callable[[], Sequence[Any]], full: Callable[[Any], bool],
                   on_orphan: Optional[Callable[[Any], None]] = None) -> Generator[Any, None, None]:
        pack = self.wire.pack_command
        args = make_request()
        conn = self._acquire()
        pending = False
        orphan: Any = None
        try:
            conn.send_packed_command([pack(args)])
            pending = True
            while True:
                reply = self._read(conn)
                pending = False
                if isinstance(reply, ResponseError):
                    raise reply
                more = full(reply)
                if more:
                    # Keep the next pop in flight while the caller works.
                    args = make_request()
                    conn.send_packed_command([pack(args)], check_health=False)
                    pending = True
                try:
                    yield reply
                except GeneratorExit:
                    if pending:
                        # Stopped early with a pop in flight: read its reply
                        # so the caller can put the items back.
                        orphan = self._read(conn)
                        pending = False
                    raise
                if not more:
                    return
        except _NETWORK_ERRORS as exc:
            conn.disconnect()
            raise PopOutcomeUnknown(
                "connection lost during %s on %r: the server may or may not have removed "
                "the items of the request in flight, which were not delivered; not retried"
                % (_name(args[0]), _key_of(args)), _key_of(args)
            ) from exc
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._release(conn)
            if orphan is not None and on_orphan is not None and not isinstance(orphan, ResponseError):
                on_orphan(orphan)

    # -- pops read straight from the socket ---------------------------------
    #
    # A pop reply is read with recv_into() into a reused buffer and fed to
    # the codec's PopReader, which decodes the members as it parses: no list
    # of raw replies is built first. Only used when the connection is a
    # redis-py one with a socket and nothing buffered in its own parser;
    # otherwise the pop goes through read_response() as any command.

    def _take_buffer(self) -> memoryview:
        try:
            return self._buffers.pop()
        except IndexError:  # first use, or pops running in several threads
            return memoryview(bytearray(_RECV_SIZE))

    def _give_buffer(self, view: memoryview) -> None:
        if len(self._buffers) < _SPARE_BUFFERS:
            self._buffers.append(view)

    @staticmethod
    def _socket_of(conn: Any) -> Any:
        """The connection's socket if this transport can read it directly, else None."""
        sock = getattr(conn, "_sock", None)
        if sock is None or not hasattr(sock, "recv_into"):
            return None
        parser = getattr(conn, "_parser", None)
        reader = getattr(parser, "_reader", None)  # hiredis: bytes read ahead would be lost
        if reader is not None and hasattr(reader, "has_data") and reader.has_data():
            return None
        buffer = getattr(parser, "_buffer", None)  # redis-py's pure-Python parsers
        if buffer is not None and hasattr(buffer, "unread_bytes") and buffer.unread_bytes():
            return None
        return sock

    @staticmethod
    def _fill(sock: Any, reader: Any, view: memoryview) -> None:
        n = sock.recv_into(view)
        if not n:
            raise RedisConnectionError("Connection closed by server.")
        reader.feed(view[:n])

    def _read_popped(self, sock: Any, reader: Any, view: memoryview, failures: Failures,
                     raw: Optional[List[Tuple[bytes, float]]] = None) -> Any:
        reply = reader.gets(failures, raw)
        while reply is False:
            self._fill(sock, reader, view)
            reply = reader.gets(failures, raw)
        return reply

    def _pop_decoded(self, args: Sequence[Any], codec: int, loads: Optional[Callable[[Any], Any]],
                     failures: Failures) -> List[Any]:
        if not self.socket_pops:
            return Transport._pop_decoded(self, args, codec, loads, failures)
        data = self.wire.pack_command(args)
        conn = self._acquire()
        view: Optional[memoryview] = None
        sock = None
        try:
            conn.send_packed_command([data])
            sock = self._socket_of(conn)
            if sock is None:
                reply = self._read(conn)
            else:
                view = self._take_buffer()
                reader = self.wire.PopReader(codec, loads, True)
                reply = self._read_popped(sock, reader, view, failures)
                if reader.pending():  # bytes no request asked for: do not reuse
                    conn.disconnect()
        except _NETWORK_ERRORS as exc:
            conn.disconnect()
            raise _pop_lost(args, exc) from exc
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._release(conn)
            if view is not None:
                self._give_buffer(view)
        if isinstance(reply, ResponseError):
            raise reply
        if sock is None:
            return self.wire.decode_items(reply, codec, loads, failures, True)
        if isinstance(reply, str):  # the codec's ErrorReply
            raise _server_error(str(reply))
        return reply

    def pop_batches(self, make_request: Callable[[], Sequence[Any]], batch_size: int, codec: int,
                    loads: Optional[Callable[[Any], Any]],
                    on_orphan: Optional[Callable[[List[Tuple[bytes, float]]], None]] = None,
                    ) -> Generator[Tuple[List[Any], Failures], None, None]:
        if not self.socket_pops:
            yield from Transport.pop_batches(self, make_request, batch_size, codec, loads, on_orphan)
            return
        args = make_request()
        conn = self._acquire()
        try:
            if getattr(conn, "_sock", False) is None:
                conn.connect()
            sock = self._socket_of(conn)
        except _NETWORK_ERRORS as exc:
            conn.disconnect()
            self._release(conn)
            raise _pop_lost(args, exc, "the items of the request in flight") from exc
        except BaseException:
            conn.disconnect()
            self._release(conn)
            raise
        if sock is None:  # not a connection this transport can read: the read_response() way
            self._release(conn)
            first = [args]
            yield from Transport.pop_batches(self, lambda: first.pop() if first else make_request(),
                                             batch_size, codec, loads, on_orphan)
            return
        pack = self.wire.pack_command
        reader = self.wire.PopReader(codec, loads, True)
        view = self._take_buffer()
        orphan: List[Tuple[bytes, float]] = []
        inflight = 0
        try:
            conn.send_packed_command([pack(args)])
            inflight = 1
            while True:
                failures: Failures = []
                decided = more = False
                while True:
                    if not decided:
                        count = reader.header()
                        if count >= 0:
                            decided = True
                            if count >= batch_size:
                                # The server has made this reply: put the next
                                # pop in flight now, so that the server works
                                # on it while this one is received and decoded.
                                args = make_request()
                                conn.send_packed_command([pack(args)], check_health=False)
                                inflight += 1
                                more = True
                    reply = reader.gets(failures)
                    if reply is not False:
                        break
                    self._fill(sock, reader, view)
                inflight -= 1
                if isinstance(reply, str):  # the codec's ErrorReply
                    raise _server_error(str(reply))
                try:
                    yield reply, failures
                except GeneratorExit:
                    if inflight:
                        # Stopped early with a pop in flight: read its members
                        # (undecoded) so that they can be put back.
                        self._read_popped(sock, reader, view, [], orphan)
                        inflight -= 1
                    if reader.pending():
                        conn.disconnect()
                    raise
                if not more:
                    if reader.pending():
                        conn.disconnect()
                    return
        except GeneratorExit:
            raise
        except _NETWORK_ERRORS as exc:
            conn.disconnect()
            # Two when the connection broke while a reply was received after
            # the next pop had been sent on the strength of its header.
            what = ("the items of the %d requests in flight" % inflight if inflight > 1
                    else "the items of the request in flight")
            raise _pop_lost(args, exc, what) from exc
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._release(conn)
            self._give_buffer(view)
            if orphan and on_orphan is not None:
                on_orphan(orphan)


class ClientTransport(Transport):
    """Run commands through a client's public API (fakeredis, clusters, wrappers).

    Retries follow the client's own configuration, which for redis-py may
    re-send a pop after a connection error: use a plain ``redis.Redis`` for
    the at-most-once guarantee of DirectTransport.
    """

    def __init__(self, client: Any, wire: ModuleType) -> None:
        self.client = client
        self.wire = wire

    def execute(self, args: Sequence[Any], *, pop: bool = False, once: bool = False) -> Any:
        return _as_bytes(self.client.execute_command(*args))

    def execute_many(self, commands: Sequence[Sequence[Any]]) -> List[Any]:
        return [self.execute(args) for args in commands]

    def zadd_stream(self, key: bytes, flags: Tuple[bytes, ...], chunks: Iterable[Chunk], codec: int,
                    dumps: Optional[Callable[[Any], Any]]) -> int:
        wire = self.wire
        total = 0
        sent = 0
        for items, scores, offset in chunks:
            n = len(items)
            if len(scores) != n:
                raise ValueError("got %d items but %d scores" % (n, len(scores)))
            args: List[Any] = ["ZADD", key]
            args.extend(flags)
            for i in range(n):
                args.append(wire.format_score(scores[i], offset + i, sent))
                args.append(wire.encode_member(codec, dumps, items[i], offset + i, sent))
            total += int(self.client.execute_command(*args))
            sent += n
        return total

    def pop_stream(self, make_request: Callable[[], Sequence[Any]], full: Callable[[Any], bool],
                   on_orphan: Optional[Callable[[Any], None]] = None) -> Generator[Any, None, None]:
        while True:
            args = make_request()
            reply = self.execute(args, pop=True)
            yield reply
            if not full(reply):
                return


def _retry_delay(attempt: int, exc: BaseException) -> Optional[float]:
    """Seconds to wait before re-sending a command that is safe to repeat,
    or None to give up. ``attempt`` counts the re-sends so far."""
    if isinstance(exc, BusyLoadingError):
        return _LOADING_POLL if attempt < _LOADING_RETRIES else None
    if attempt >= _SAFE_RETRIES:
        return None
    return _RETRY_BACKOFF * (attempt + 1)


def _is_noscript(exc: ResponseError) -> bool:
    """True for the NOSCRIPT error (redis-py turns it into NoScriptError)."""
    return isinstance(exc, NoScriptError) or str(exc).startswith("NOSCRIPT")


def _pair_count(reply: Any) -> int:
    """Number of members in a ZPOPMIN-shaped reply (flat pairs or nested)."""
    if not reply:
        return 0
    if type(reply[0]) is list:
        return len(reply)
    return len(reply) // 2


def _pop_lost(args: Sequence[Any], exc: BaseException, what: str = "the items") -> PopOutcomeUnknown:
    return PopOutcomeUnknown(
        "connection lost during %s on %r: the server may or may not have removed %s, "
        "which were not delivered; not retried" % (_name(args[0]), _key_of(args), what),
        _key_of(args),
    )


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key_of(args: Sequence[Any]) -> str:
    name = _name(args[0]).upper()
    if name in ("EVALSHA", "EVAL") and len(args) > 3:
        return _name(args[3])
    return _name(args[1]) if len(args) > 1 else ""


def make_transport(client: Any, wire: ModuleType) -> Transport:
    """Pick :class:`DirectTransport` for redis-py clients it can drive."""
    pool = getattr(client, "connection_pool", None)
    conn_cls = getattr(pool, "connection_class", None)
    if (
        isinstance(client, redis.Redis)
        and isinstance(pool, redis.ConnectionPool)
        and conn_cls is not None
        and conn_cls.__module__.startswith("redis.")
        and hasattr(conn_cls, "send_packed_command")
    ):
        return DirectTransport(client, wire)
    return ClientTransport(client, wire)
