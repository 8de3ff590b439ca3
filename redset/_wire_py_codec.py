"""Pure-Python encoding and decoding of the codec twin (see :mod:`redset._wire_py`).

Everything here turns Python values into RESP request bytes and turns parsed
replies back into Python values. Nothing here knows about sockets: the
drivers in :mod:`redset._io` move the bytes. ``redset._wire_c``
exports the same names with the same signatures and gives byte-identical
output and identical exceptions; only :mod:`redset._wire` imports either.
"""
from __future__ import annotations

import json
from operator import index as _as_index
from typing import Any, Callable, List, Optional, Sequence, Tuple

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

# The public names are re-exported, with the reader's, by redset._wire_py.

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
