"""Reading pop replies, shared by the sync and asyncio drivers.

:meth:`PopState.answer` is a small generator that says what it needs
(``FILL``: more bytes from the socket into ``reader``; ``READ``: one reply
from the connection's own parser; a list of commands: send them now) and
returns the answer to a :class:`~redset._core.steps.Recv`. The drivers only
do the I/O it asks for, each in its own way.
"""
from __future__ import annotations

from typing import Any, Generator, List, Optional

from redset._codec import Codec
from redset._core import kinds
from redset._core.steps import LEASES, PAIRS, POP, Recv
from redset._wire_py_reader import make_leases
from redset._io.clientlib import REDIS_PY, ClientLib

__all__ = ["PopState", "FILL", "READ", "as_bytes", "pair_count", "parser_holds_data", "parser_is_native"]

FILL = "fill"
READ = "read"

def parser_holds_data(conn: Any) -> bool:
    """Whether the connection's own parser has bytes read ahead, which a
    read straight from the socket or stream would skip."""
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)  # hiredis
    if reader is not None and hasattr(reader, "has_data") and reader.has_data():
        return True
    buffer = getattr(parser, "_buffer", None)
    if buffer is None or type(buffer) is bytearray:
        return False  # hiredis's scratch bytearray (its reader holds what was read ahead)
    unread = getattr(buffer, "unread_bytes", None)
    if unread is not None:  # the sync pure-Python parsers' SocketBuffer
        return bool(unread())
    if isinstance(buffer, bytes):  # the asyncio pure-Python parsers: bytes past _pos are unparsed
        return len(buffer) > int(getattr(parser, "_pos", 0) or 0)
    return False


#: Modules of the C reply parsers a connection's parser may wrap.
_NATIVE_PARSERS = ("hiredis", "libvalkey")


def parser_is_native(conn: Any) -> bool:
    """Whether the connection parses replies in C (hiredis, libvalkey)."""
    reader = getattr(getattr(conn, "_parser", None), "_reader", None)
    return reader is not None and type(reader).__module__.split(".", 1)[0] in _NATIVE_PARSERS


def as_bytes(value: Any) -> Any:
    """Normalize a reply from a decoding client: str -> UTF-8 bytes, tuples -> lists."""
    if type(value) is str:
        return value.encode("utf-8")
    if isinstance(value, (list, tuple)):
        return [as_bytes(v) for v in value]
    return value


def pair_count(reply: Any) -> int:
    """Number of members in a ZPOPMIN-shaped reply (flat pairs or nested)."""
    if not reply:
        return 0
    if type(reply[0]) is list:
        return len(reply)
    return len(reply) // 2


class PopState:
    """The pop side of one plan's connection.

    ``direct``: the socket can be read by redset (a redis-py connection whose
    parser holds no bytes), so pop replies are parsed by the codec's
    ``PopReader``; otherwise they are read with the connection's parser and
    decoded afterwards.
    """

    __slots__ = ("wire", "direct", "view", "reader", "decided", "lib")

    def __init__(self, wire: Codec, direct: bool, view: memoryview, lib: ClientLib = REDIS_PY) -> None:
        self.wire = wire
        self.lib = lib
        self.direct = direct
        self.view = view
        self.reader: Any = None
        # False while a request waits for the current reply's header (its
        # Recv has ``ahead``): a driver may then ask for it before the whole
        # reply has arrived, with :meth:`ahead_cmds`.
        self.decided = True

    def dirty(self) -> bool:
        """True if bytes arrived that no request asked for (do not reuse the connection)."""
        return self.reader is not None and bool(self.reader.pending())

    def ahead_cmds(self, req: Recv) -> Any:
        """The commands ``req.ahead`` asks to send once the current reply's
        header has arrived; None before that, and after the first call that
        found it (it is asked once per reply). The caller must send them."""
        if self.decided:
            return None
        count = self.reader.header()
        if count < 0:
            return None
        self.decided = True
        return req.ahead(count)  # type: ignore[misc]

    def answer(self, req: Recv) -> Generator[Any, Any, Any]:
        """Produce the answer to ``req`` (mode POP, PAIRS or LEASES), asking for I/O."""
        wire = self.wire
        if not self.direct:
            reply = yield READ
            if isinstance(reply, kinds.RESPONSE):
                return reply
            if req.ahead is not None:
                cmds = req.ahead(pair_count(reply))
                if cmds:
                    yield cmds
            if req.mode == PAIRS:
                return wire.decode_scored(reply)
            failures: List[Any] = []
            if req.mode == LEASES:
                assert req.leases is not None
                return make_leases(wire.decode_scored(reply), req.codec, req.loads, failures, req.leases), failures
            return wire.decode_items(reply, req.codec, req.loads, failures, True), failures
        reader, raw, leases = self.start(req)
        failures = []
        while True:
            if not self.decided:
                cmds = self.ahead_cmds(req)
                if cmds:
                    yield cmds
            got = reader.gets(failures, raw, leases)
            if got is not False:
                break
            yield FILL
        return self.finish(req, got, failures, raw)

    def start(self, req: Recv) -> Any:
        """Begin reading ``req``'s reply straight from the bytes: ``(reader,
        raw, leases)``, the codec's reader of this connection and the
        ``raw`` and ``leases`` arguments of its ``gets``. A driver that has
        nothing to send ahead (``req.ahead`` is None) may then call ``gets``
        itself, feeding the reader until it answers, and give what it
        answered to :meth:`finish`: the very steps of :meth:`answer`."""
        if self.reader is None:
            self.reader = self.wire.PopReader(req.codec, req.loads, True)
        self.decided = req.ahead is None
        return (self.reader, [] if req.mode == PAIRS else None,
                None if req.leases is None else req.leases + (req.codec, req.loads))

    def finish(self, req: Recv, got: Any, failures: List[Any], raw: Optional[List[Any]]) -> Any:
        """The answer to ``req``, from what the reader's ``gets`` answered."""
        if isinstance(got, str):  # the codec's ErrorReply
            return self.lib.server_error(str(got))
        if raw is not None:
            return raw
        assert req.mode in (POP, LEASES)
        return got, failures
