"""Pure-Python ``PopReader`` of the codec twin (see :mod:`redset._wire_py`):
pop replies parsed from raw RESP bytes and decoded in one step."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from redis.exceptions import InvalidResponse

from redset._wire_py_codec import decode_items

__all__ = ["ErrorReply", "PopReader", "NATIVE_POP_READER"]

# ---------------------------------------------------------------------------
# Pop replies, parsed and decoded in one step

# The messages of InvalidResponse; the compiled twin formats the same ones.
_M_TYPE = "Protocol error: unexpected reply type byte %r in a pop reply"
_M_LENGTH = "Protocol error: invalid length %r in a pop reply"
_M_CRLF = "Protocol error: bulk string not terminated by CRLF in a pop reply"
_M_PAIR = "Protocol error: expected a [member, score] pair, got an array of %r in a pop reply"
_M_ODD = "Protocol error: odd element count %d in a pop reply with scores"
_M_NULL = "Protocol error: invalid null reply %r in a pop reply"
_M_SCORE = "Protocol error: invalid score %r in a pop reply"
_M_RAW = "raw pairs need a reader created with with_scores=True"
_M_BUSY = "PopReader used again while gets() was decoding"
# Lengths have at most 18 digits, so that they fit a C long long.
_MAX_DIGITS = 18


# PopReader here parses in Python, several times slower than hiredis (C)
# followed by decode_items: the transports use it only when asked to
# (REDSET_SOCKET_POPS=1); it is the reference the compiled reader is tested against.
NATIVE_POP_READER = False


class ErrorReply(str):
    """An error reply of the server (its message), returned by :meth:`PopReader.gets`.

    It is a value, not an exception: the transport turns it into redis-py's
    exception class once the connection is back in a clean state.
    """

    __slots__ = ()


def _length(line: bytes) -> int:
    if 0 < len(line) <= _MAX_DIGITS and line.isdigit():
        return int(line)
    raise InvalidResponse(_M_LENGTH % (line,))


def _score(text: bytes) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidResponse(_M_SCORE % (text,)) from None


class PopReader:
    """Parse pop replies from raw RESP bytes and decode their members.

    One reader serves one connection: :meth:`feed` it the bytes read from the
    socket, in chunks of any size, and call :meth:`gets` for each reply. It
    accepts what ZPOPMIN and redset's pop scripts return on RESP2 and RESP3:

    * ``*2N`` flat ``$member``, ``$score`` (RESP2, scripts on both protocols,
      RESP3 on Redis 6.2 with ``,score`` doubles);
    * ``*N`` of ``*2`` [``$member``, ``,score``] pairs (RESP3, Redis 7+);
    * without scores, ``*N`` of ``$member``;
    * ``*0``, ``*-1`` and ``_`` (empty); ``-ERR ...`` and ``!<len>`` errors.

    Anything else (push ``>``, attributes ``|``, other types, bad framing)
    raises :class:`redis.exceptions.InvalidResponse`, and the reader (and
    the connection it read from) should be discarded.

    :param codec: the member codec, as for :func:`decode_items`.
    :param loads: the loads function of ``CODEC_CUSTOM``.
    :param with_scores: replies carry a score after each member.
    """

    def __init__(self, codec: int, loads: Optional[Callable[[Any], Any]], with_scores: bool) -> None:
        self._codec = codec
        self._loads = loads
        self._with_scores = bool(with_scores)
        self._buf = b""
        self._pos = 0  # first byte not yet scanned
        self._busy = False
        self._new_reply()

    def _new_reply(self) -> None:
        self._left = -1  # elements (pairs with scores) left to scan; -1: no header yet
        self._count = -1
        self._nested = False
        self._members: List[bytes] = []
        self._scores: List[bytes] = []

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Append bytes read from the connection (bytes, bytearray or memoryview)."""
        if self._busy:
            raise RuntimeError(_M_BUSY)
        if self._pos:
            self._buf = self._buf[self._pos:] + data
            self._pos = 0
        else:
            self._buf += data

    def pending(self) -> bool:
        """True if bytes were fed that no returned reply consumed yet."""
        return self._left >= 0 or len(self._buf) > self._pos

    def header(self) -> int:
        """The member count announced by the next reply, or -1 if unknown yet.

        -1 means "not known": the header has not fully arrived, the reply is
        an error, or it is malformed (:meth:`gets` raises then). A value
        ``>= 0`` is exact: the number of members in the reply (some of which
        may still fail to decode).
        """
        if self._left < 0:
            try:
                if self._head() != 1:
                    return -1
            except InvalidResponse:
                return -1
        return self._count

    def complete(self) -> bool:
        """True once the next reply has fully arrived, so :meth:`gets` will
        not return False for want of bytes (also True for an error reply's
        first byte and for bytes that are not a pop reply: :meth:`gets`
        tells which). Scans what is new since the last call; consumes nothing.
        """
        try:
            if self._left < 0:
                head = self._head()
                if head != 1:
                    return head == 2
            return not self._left or self._scan()
        except InvalidResponse:
            return True

    def _head(self) -> int:
        """Scan the header of the next reply: 1 done, 0 incomplete, 2 an error reply."""
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            return 0
        kind = buf[pos]
        if kind == 42:  # "*<n>\r\n" or "*-1\r\n"
            end = buf.find(b"\r\n", pos + 1)
            if end < 0:
                return 0
            line = buf[pos + 1:end]
            nested = False
            if line == b"-1":
                n = count = 0
            else:
                n = count = _length(line)
                if self._with_scores and n:
                    if end + 2 >= len(buf):
                        return 0  # the first element tells flat from nested
                    if buf[end + 2] == 42:
                        nested = True
                    elif n % 2:
                        raise InvalidResponse(_M_ODD % n)
                    else:
                        n = count = n // 2
        elif kind == 95:  # "_\r\n", the RESP3 null
            end = buf.find(b"\r\n", pos + 1)
            if end < 0:
                return 0
            if end != pos + 1:
                raise InvalidResponse(_M_NULL % (buf[pos + 1:end],))
            n = count = 0
            nested = False
        elif kind == 45 or kind == 33:  # "-ERR ...", "!<len>\r\n..."
            return 2
        else:
            raise InvalidResponse(_M_TYPE % (buf[pos:pos + 1],))
        self._pos = end + 2
        self._left = n
        self._count = count
        self._nested = nested
        return 1

    def _error(self) -> Any:
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n", pos + 1)
        if end < 0:
            return False
        if buf[pos] == 45:
            message = buf[pos + 1:end]
            self._pos = end + 2
        else:
            size = _length(buf[pos + 1:end])
            start = end + 2
            end = start + size
            if end + 2 > len(buf):
                return False
            if buf[end:end + 2] != b"\r\n":
                raise InvalidResponse(_M_CRLF)
            message = buf[start:end]
            self._pos = end + 2
        return ErrorReply(message.decode("utf-8", "replace"))

    def gets(
        self, failures: List[Tuple[bytes, BaseException]], raw: Optional[List[Tuple[bytes, float]]] = None,
        leases: Optional[Tuple[Any, ...]] = None,
    ) -> Union[List[Any], ErrorReply, bool]:
        """Return the next complete reply, decoded.

        :param failures: members that fail to decode are appended as
            ``(raw_member, exception)`` and skipped, as :func:`decode_items`
            does (RuntimeError, MemoryError and KeyboardInterrupt propagate).
        :param raw: if given, ``(member_bytes, score_float)`` pairs are
            appended to it instead of decoding, and an empty list is
            returned (the reader must have been created ``with_scores``).
        :param leases: ``(cls, batch, deliveries, codec, loads)``: return
            lease handles instead of items (see :func:`make_leases`).
        :returns: the list of decoded items; ``False`` if the reply has not
            fully arrived; an :class:`ErrorReply` for an error reply.
        :raises redis.exceptions.InvalidResponse: the bytes are not a pop reply.
        """
        if raw is not None and not self._with_scores:
            raise ValueError(_M_RAW)
        if self._busy:
            raise RuntimeError(_M_BUSY)
        if self._left < 0:
            head = self._head()
            if head == 0:
                return False
            if head == 2:
                return self._error()
        if self._left and not self._scan():
            return False
        members = self._members
        scores = self._scores
        self._new_reply()  # consumed, whatever decoding does next
        self._busy = True
        try:
            if raw is not None:
                append = raw.append
                for i in range(len(members)):
                    append((members[i], _score(scores[i])))
                return []
            if leases is not None:
                if not self._with_scores:
                    raise ValueError(_M_RAW)
                pairs = [(members[i], _score(scores[i])) for i in range(len(members))]
                return make_leases(pairs, leases[3], leases[4], failures, leases[:3])
            return decode_items(members, self._codec, self._loads, failures, False)
        finally:
            self._busy = False

    def _scan(self) -> bool:
        """Scan further elements of the current reply; True when it is complete."""
        buf = self._buf
        size = len(buf)
        pos = self._pos
        left = self._left
        members = self._members
        scores = self._scores
        with_scores = self._with_scores
        nested = self._nested
        find = buf.find
        try:
            while left:
                # One element: "*2\r\n" when nested, "$<n>\r\n<member>\r\n",
                # then with scores "$<n>\r\n<score>\r\n" or ",<score>\r\n".
                p = pos
                if nested:
                    if p >= size:
                        return False
                    if buf[p] != 42:
                        raise InvalidResponse(_M_TYPE % (buf[p:p + 1],))
                    end = find(b"\r\n", p + 1)
                    if end < 0:
                        return False
                    if buf[p + 1:end] != b"2":
                        raise InvalidResponse(_M_PAIR % (buf[p + 1:end],))
                    p = end + 2
                if p >= size:
                    return False
                if buf[p] != 36:
                    raise InvalidResponse(_M_TYPE % (buf[p:p + 1],))
                end = find(b"\r\n", p + 1)
                if end < 0:
                    return False
                start = end + 2
                p = start + _length(buf[p + 1:end])
                if p + 2 > size:
                    return False
                if buf[p:p + 2] != b"\r\n":
                    raise InvalidResponse(_M_CRLF)
                member = buf[start:p]
                p += 2
                if with_scores:
                    if p >= size:
                        return False
                    kind = buf[p]
                    end = find(b"\r\n", p + 1)
                    if kind == 36:
                        if end < 0:
                            return False
                        start = end + 2
                        p = start + _length(buf[p + 1:end])
                        if p + 2 > size:
                            return False
                        if buf[p:p + 2] != b"\r\n":
                            raise InvalidResponse(_M_CRLF)
                        scores.append(buf[start:p])
                        p += 2
                    elif kind == 44:
                        if end < 0:
                            return False
                        scores.append(buf[p + 1:end])
                        p = end + 2
                    else:
                        raise InvalidResponse(_M_TYPE % (buf[p:p + 1],))
                members.append(member)
                pos = p
                left -= 1
            return True
        finally:
            self._pos = pos
            self._left = left


#: The slots a lease handle class gets from a reader, in order.
LEASE_SLOTS = ("_batch", "member", "item", "score", "deliveries", "_settled")


def make_leases(pairs: List[Tuple[bytes, float]], codec: int, loads: Any,
                failures: List[Tuple[bytes, BaseException]],
                spec: Tuple[Any, ...]) -> List[Any]:
    """Lease handles for ``(member, score)`` pairs: ``spec`` is ``(cls,
    batch, deliveries)``; one ``cls`` instance per member that decodes (made
    by ``object.__new__``, no ``__init__``), with the slots of
    :data:`LEASE_SLOTS` set: ``batch``, the member, its item, its score, its
    deliveries (``deliveries.get(member, 1)``, or 1 when None) and False.
    Members that fail to decode go to ``failures`` as in :func:`decode_items`.
    """
    cls, batch, deliveries = spec
    new = cls.__new__
    out = []
    before = len(failures)
    items = decode_items([m for m, _ in pairs], codec, loads, failures, False)
    if len(failures) > before:  # line the items up with their pairs again
        bad = {id(m) for m, _ in failures[before:]}
        pairs = [p for p in pairs if id(p[0]) not in bad]
    for (member, score), item in zip(pairs, items):
        lease = new(cls)
        lease._batch = batch
        lease.member = member
        lease.item = item
        lease.score = score
        lease.deliveries = 1 if deliveries is None else deliveries.get(member, 1)
        lease._settled = False
        out.append(lease)
    return out


def whole_batch(leases: List[Any], batch: Any) -> bool:
    """True if ``leases`` holds ``batch.n`` distinct handles, all of
    ``batch`` (their ``_batch`` slot), none marked ``_settled``."""
    n = len(leases)
    if n == 0 or n != batch.n or len(set(leases)) != n:  # handles hash by identity
        return False
    cls = type(leases[0])
    return all(type(x) is cls and x._batch is batch and x._settled is False for x in leases)
