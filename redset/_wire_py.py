"""Pure-Python batch encoder and decoder (the twin of ``redset._wire_c``).

Everything here turns Python values into RESP request bytes and turns parsed
replies back into Python values. Nothing here knows about sockets: the
drivers in :mod:`redset._io` move the bytes. ``redset._wire_c``
exports the same names with the same signatures and gives byte-identical
output and identical exceptions; only :mod:`redset._wire` imports either.
"""
from __future__ import annotations

import json
from operator import index as _as_index
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from redis.exceptions import InvalidResponse

from redset.exceptions import (
    InvalidItemError,
    InvalidScoreError,
    InvalidScoreValueError,
)

try:  # optional fast JSON
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None  # type: ignore[assignment]

try:  # optional msgpack codec
    import msgpack as _msgpack
except ImportError:  # pragma: no cover
    _msgpack = None  # type: ignore[assignment, unused-ignore]

__all__ = [
    "CODEC_DEFAULT",
    "CODEC_STR",
    "CODEC_BYTES",
    "CODEC_INT",
    "CODEC_JSON",
    "CODEC_MSGPACK",
    "CODEC_CUSTOM",
    "format_score",
    "encode_member",
    "decode_member",
    "pack_command",
    "pack_zadd",
    "decode_items",
    "decode_scored",
    "json_dumps_canonical",
    "ErrorReply",
    "PopReader",
    "NATIVE_POP_READER",
]

# Codec ids. A serializer object carries one in ``_redset_codec``; anything
# else is CODEC_CUSTOM and has its own dumps/loads called per item.
CODEC_DEFAULT = 0  # 0.5.1 default: bytes/str/int/float in as redis-py encodes them, str out
CODEC_STR = 1
CODEC_BYTES = 2
CODEC_INT = 3
CODEC_JSON = 4
CODEC_MSGPACK = 5
CODEC_CUSTOM = 6

# Integers up to 2**53 are exact doubles: send their digits. Larger ones are
# rounded to the nearest double first, as the server would do.
_EXACT_INT = 2**53
# orjson serializes integers in this range; outside it we use the stdlib.
_ORJSON_INT_MIN = -(2**63)
_ORJSON_INT_MAX = 2**64 - 1
_ORJSON_MAX_DEPTH = 200


def _describe(index: Optional[int]) -> str:
    return "item" if index is None else "item %d" % index


def format_score(score: Any, index: Optional[int] = None, sent: int = 0) -> bytes:
    """Return the RESP argument for a score, after checking it.

    Integers within 2**53 are sent as their digits; other reals as the
    shortest repr that round-trips (``repr(float)``), ``inf``/``-inf`` included.

    :raises InvalidScoreError: (a ``TypeError``) for bool, None, str, Decimal
        and anything that is not an int or float.
    :raises InvalidScoreValueError: (a ``ValueError``) for NaN and for
        integers beyond the range of a double.
    """
    tp = type(score)
    if tp is int:
        if -_EXACT_INT <= score <= _EXACT_INT:
            return b"%d" % score
        return _format_big_int(score, index, sent)
    if tp is float:
        if score != score:
            raise InvalidScoreValueError(
                "score of %s is NaN, which a sorted set cannot store" % _describe(index), index, sent
            )
        return repr(score).encode()
    if tp is bool or score is None:
        raise InvalidScoreError(
            "score of %s must be an int or float, not %s" % (_describe(index), tp.__name__), index, sent
        )
    if isinstance(score, float):  # float subclasses, e.g. numpy.float64
        return format_score(float(score), index, sent)
    if isinstance(score, int):  # int subclasses (IntEnum, ...)
        return format_score(int(score), index, sent)
    if hasattr(tp, "__index__") and not isinstance(score, (str, bytes)):
        try:
            value = _as_index(score)  # numpy integers
        except TypeError:
            pass
        else:
            return format_score(value, index, sent)
    raise InvalidScoreError(
        "score of %s must be an int or float, not %s" % (_describe(index), tp.__name__), index, sent
    )


def _format_big_int(score: int, index: Optional[int], sent: int) -> bytes:
    try:
        value = float(score)
    except OverflowError:
        raise InvalidScoreValueError(
            "score of %s is an integer beyond the range of a double" % _describe(index), index, sent
        ) from None
    return repr(value).encode()


def _orjson_safe(obj: Any, depth: int) -> bool:
    """True if orjson encodes ``obj`` to the same bytes as the stdlib would.

    That holds for exact dicts with str keys, lists, tuples, str, bool, None
    and ints in orjson's range. Floats are excluded on purpose: orjson and
    ``repr`` pick different notations for some magnitudes (0.00001 vs 1e-05),
    and equal content must give equal members on every machine.
    """
    tp = type(obj)
    if tp is str or obj is None or tp is bool:
        return True
    if tp is int:
        return _ORJSON_INT_MIN <= obj <= _ORJSON_INT_MAX
    if depth >= _ORJSON_MAX_DEPTH:
        return False
    if tp is dict:
        for key, value in obj.items():
            if type(key) is not str or not _orjson_safe(value, depth + 1):
                return False
        return True
    if tp is list or tp is tuple:
        for value in obj:
            if not _orjson_safe(value, depth + 1):
                return False
        return True
    return False


_stdlib_json_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def json_dumps_canonical(obj: Any, use_orjson: bool = True) -> bytes:
    """Encode ``obj`` as canonical JSON: sorted keys, no spaces, UTF-8.

    The stdlib's output defines the format; orjson is used when installed and
    when it gives the same bytes (see :func:`_orjson_safe`). NaN and infinity
    are rejected.

    :raises TypeError: or ``ValueError`` when ``obj`` is not JSON.
    """
    if use_orjson and _orjson is not None and _orjson_safe(obj, 0):
        return _orjson.dumps(obj, option=_orjson.OPT_SORT_KEYS)
    return _stdlib_json_encode(obj).encode("utf-8")


def _json_loads(raw: bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass  # integers beyond 64 bits, NaN literals: the stdlib decides
    return json.loads(raw)


def _plain_member(value: Any) -> Optional[bytes]:
    """Encode a value the way redis-py encodes a command argument, or None."""
    tp = type(value)
    if tp is bytes:
        return value
    if tp is str:
        return value.encode("utf-8")
    if tp is int:
        return b"%d" % value
    if tp is float:
        return repr(value).encode()
    if tp is bool or value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return str.encode(value, "utf-8")
    if isinstance(value, int):
        return b"%d" % int(value)
    if isinstance(value, float):
        return repr(float(value)).encode()
    return None


#: Why the default serializer refuses bytes that are not UTF-8.
_NOT_UTF8 = (
    "bytes that are not valid UTF-8: the default serializer gives items back as str, "
    "so these could not be popped; use BytesSerializer to store raw bytes"
)


def _check_utf8(raw: bytes) -> None:
    """Refuse bytes the default serializer could not give back as str."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(_NOT_UTF8) from None


def _encode_member(codec: int, dumps: Optional[Callable[[Any], Any]], item: Any) -> Optional[bytes]:
    """Encode one item; None means the codec does not accept it."""
    if codec == CODEC_DEFAULT:
        out = _plain_member(item)
        if out is not None and isinstance(item, (bytes, bytearray, memoryview)):
            _check_utf8(out)
        return out
    if codec == CODEC_STR:
        # str.encode, not item.encode: a str subclass cannot override the bytes.
        return str.encode(item, "utf-8") if isinstance(item, str) else None
    if codec == CODEC_BYTES:
        return bytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else None
    if codec == CODEC_INT:
        if isinstance(item, int) and not isinstance(item, bool):
            return b"%d" % item
        return None
    if codec == CODEC_JSON:
        return json_dumps_canonical(item)
    if codec == CODEC_MSGPACK:
        if _msgpack is None:
            raise RuntimeError("the msgpack codec needs the msgpack package: pip install redset[msgpack]")
        return _msgpack.packb(item, use_bin_type=True)
    if dumps is None:
        raise ValueError("CODEC_CUSTOM needs a dumps function")
    return _plain_member(dumps(item))


def encode_member(
    codec: int, dumps: Optional[Callable[[Any], Any]], item: Any, index: Optional[int] = None, sent: int = 0
) -> bytes:
    """Serialize one item into the bytes stored as the member.

    :raises InvalidItemError: (a ``TypeError``) naming the item's index when
        the codec rejects the item or the serializer raises.
    """
    try:
        out = _encode_member(codec, dumps, item)
    except (RuntimeError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise InvalidItemError(
            "%s could not be serialized: %s: %s" % (_describe(index), type(exc).__name__, exc), index, sent
        ) from exc
    if out is None:
        raise InvalidItemError(
            "%s could not be serialized: %s is not accepted by this serializer"
            % (_describe(index), type(item).__name__),
            index,
            sent,
        )
    return out


def decode_member(codec: int, loads: Optional[Callable[[Any], Any]], raw: bytes) -> Any:
    """Deserialize one member; exceptions from the codec propagate."""
    if codec == CODEC_DEFAULT or codec == CODEC_STR:
        return raw.decode("utf-8")
    if codec == CODEC_BYTES:
        return raw
    if codec == CODEC_INT:
        return int(raw)
    if codec == CODEC_JSON:
        return _json_loads(raw)
    if codec == CODEC_MSGPACK:
        if _msgpack is None:
            raise RuntimeError("the msgpack codec needs the msgpack package: pip install redset[msgpack]")
        return _msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if loads is None:
        raise ValueError("CODEC_CUSTOM needs a loads function")
    return loads(raw)


def _arg(value: Any) -> bytes:
    tp = type(value)
    if tp is bytes:
        return value
    if tp is str:
        return value.encode("utf-8")
    if tp is int:
        return b"%d" % value
    if tp is float:
        return repr(value).encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("command argument must be bytes, str, int or float, not %s" % tp.__name__)


def pack_command(args: Sequence[Any]) -> bytes:
    """Encode one command as a RESP array of bulk strings.

    ``("ZCARD", b"k")`` becomes ``*2\\r\\n$5\\r\\nZCARD\\r\\n$1\\r\\nk\\r\\n``.
    """
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = _arg(value)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


def pack_zadd(
    key: bytes,
    flags: Tuple[bytes, ...],
    items: Sequence[Any],
    scores: Sequence[Any],
    codec: int,
    dumps: Optional[Callable[[Any], Any]],
    offset: int = 0,
    sent: int = 0,
) -> bytes:
    """Encode one ``ZADD key [flags] score member ...`` for a chunk of items.

    The whole chunk is encoded before anything is returned, so a bad item or
    score means nothing of this chunk is sent. ``offset`` is the index of
    ``items[0]`` in the caller's input (error messages name input indices);
    ``sent`` is how many items earlier chunks already sent.

    :raises InvalidItemError: an item the codec rejects.
    :raises InvalidScoreError: a score that is not a real number.
    :raises InvalidScoreValueError: a NaN score or an int beyond double range.
    :raises ValueError: ``items`` and ``scores`` differ in length, or are empty.
    """
    n = len(items)
    if len(scores) != n:
        raise ValueError("got %d items but %d scores" % (n, len(scores)))
    if n == 0:
        raise ValueError("ZADD needs at least one item")
    # Key and flags go through _arg like any command argument: len() of a
    # memoryview counts elements, not bytes, and a str key would otherwise
    # only fail at the join, after every item was encoded.
    if type(key) is not bytes:
        key = _arg(key)
    flag_args = [flag if type(flag) is bytes else _arg(flag) for flag in flags]
    parts = [b"*%d\r\n$4\r\nZADD\r\n$%d\r\n" % (2 + len(flag_args) + 2 * n, len(key)), key, b"\r\n"]
    for flag in flag_args:
        parts.append(b"$%d\r\n%s\r\n" % (len(flag), flag))
    append = parts.append
    for i in range(n):
        index = offset + i
        score = format_score(scores[i], index, sent)
        member = encode_member(codec, dumps, items[i], index, sent)
        append(b"$%d\r\n%s\r\n$%d\r\n" % (len(score), score, len(member)))
        append(member)
        append(b"\r\n")
    return b"".join(parts)


def decode_items(
    reply: Any,
    codec: int,
    loads: Optional[Callable[[Any], Any]],
    failures: List[Tuple[bytes, BaseException]],
    with_scores: bool,
) -> List[Any]:
    """Deserialize the members of a parsed reply, in order.

    ``reply`` is a list as hiredis parses it: with ``with_scores`` either the
    RESP2 flat ``[member, score, member, score, ...]`` or the RESP3 nested
    ``[[member, score], ...]``; without, a flat ``[member, ...]``. Scores are
    dropped. A member that fails to decode is appended to ``failures`` as
    ``(raw, exception)`` and skipped.
    """
    out: List[Any] = []
    if not reply:
        return out
    if with_scores:
        if type(reply[0]) is list:
            raws = [pair[0] for pair in reply]
        else:
            raws = reply[0::2]
    else:
        raws = reply
    append = out.append
    for raw in raws:
        if type(raw) is str:  # a client that decodes responses
            raw = raw.encode("utf-8")
        try:
            append(decode_member(codec, loads, raw))
        except (RuntimeError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:
            failures.append((raw, exc))
    return out


def decode_scored(reply: Any) -> List[Tuple[bytes, float]]:
    """Return ``[(member, score), ...]`` from a WITHSCORES or ZPOPMIN reply."""
    if not reply:
        return []
    if type(reply[0]) is list:
        return [(_raw(pair[0]), float(pair[1])) for pair in reply]
    return [(_raw(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _raw(value: Any) -> bytes:
    return value.encode("utf-8") if type(value) is str else value



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
        self, failures: List[Tuple[bytes, BaseException]], raw: Optional[List[Tuple[bytes, float]]] = None
    ) -> Union[List[Any], ErrorReply, bool]:
        """Return the next complete reply, decoded.

        :param failures: members that fail to decode are appended as
            ``(raw_member, exception)`` and skipped, as :func:`decode_items`
            does (RuntimeError, MemoryError and KeyboardInterrupt propagate).
        :param raw: if given, ``(member_bytes, score_float)`` pairs are
            appended to it instead of decoding, and an empty list is
            returned (the reader must have been created ``with_scores``).
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
