"""Serializers: how items become set members and come back.

Any object with ``dumps``/``loads`` works as a serializer. The built-in ones
below also carry a codec id that the batch pipeline (compiled or pure) runs
without calling back into Python per item.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Type

from redset import _wire
from redset._wire_py import (
    CODEC_BYTES,
    CODEC_CUSTOM,
    CODEC_DEFAULT,
    CODEC_INT,
    CODEC_JSON,
    CODEC_MSGPACK,
    CODEC_STR,
)
from redset.interfaces import Serializer

__all__ = [
    "NamedtupleSerializer",
    "StrSerializer",
    "BytesSerializer",
    "IntSerializer",
    "JSONSerializer",
    "MsgpackSerializer",
    "DefaultSerializer",
]


class _CodecSerializer(Serializer):
    """A serializer the batch pipeline runs natively (see ``_redset_codec``)."""

    _redset_codec = CODEC_CUSTOM

    def dumps(self, obj: Any) -> bytes:
        """Serialize ``obj`` to the member bytes.

        :raises TypeError: if this serializer does not accept ``obj``.
        """
        return _wire.impl.encode_member(self._redset_codec, None, obj)

    def loads(self, str_from_redis: Any) -> Any:
        """Deserialize member bytes (or str) back into an object."""
        raw = str_from_redis.encode("utf-8") if isinstance(str_from_redis, str) else str_from_redis
        return _wire.impl.decode_member(self._redset_codec, None, raw)

    def __repr__(self) -> str:
        return "%s()" % type(self).__name__


class DefaultSerializer(_CodecSerializer):
    """redset 0.5.1's default: bytes, str, int and float go in as redis-py
    would send them; members come back as ``str`` (UTF-8)."""

    _redset_codec = CODEC_DEFAULT


class StrSerializer(_CodecSerializer):
    """``str`` in, ``str`` out (UTF-8); anything else is rejected."""

    _redset_codec = CODEC_STR


class BytesSerializer(_CodecSerializer):
    """``bytes`` in, ``bytes`` out, unchanged."""

    _redset_codec = CODEC_BYTES


class IntSerializer(_CodecSerializer):
    """``int`` in (bool rejected), ``int`` out; stored as decimal digits."""

    _redset_codec = CODEC_INT


class JSONSerializer(_CodecSerializer):
    """Canonical JSON: keys sorted, no whitespace, UTF-8, NaN/Infinity rejected.

    Equal content gives equal members in every process, so deduplication
    works across producers. The format is the stdlib ``json`` module's with
    ``sort_keys=True, separators=(",", ":"), ensure_ascii=False``; orjson is
    used when installed wherever it gives the same bytes (values without
    floats), which a property test checks.

    :param use_orjson: False forces the stdlib encoder and decoder (for
        benchmarking; the bytes are the same).
    """

    _redset_codec = CODEC_JSON

    def __init__(self, use_orjson: bool = True) -> None:
        self.use_orjson = use_orjson
        if not use_orjson:
            # Run as a custom codec so the pipeline calls the stdlib per item.
            self._redset_codec = CODEC_CUSTOM

    def dumps(self, obj: Any) -> bytes:
        """Canonical JSON bytes of ``obj`` (sorted keys, no spaces): the same
        bytes with or without orjson, so the same object dedups."""
        if self.use_orjson:
            return super().dumps(obj)
        try:
            return _wire.impl.json_dumps_canonical(obj, False)
        except (TypeError, ValueError) as exc:
            raise TypeError("not JSON serializable: %s" % exc) from exc

    def loads(self, str_from_redis: Any) -> Any:
        """The object of a JSON member (bytes or str)."""
        if self.use_orjson:
            return super().loads(str_from_redis)
        return json.loads(str_from_redis)

    def __repr__(self) -> str:
        return "JSONSerializer(use_orjson=%r)" % self.use_orjson


class MsgpackSerializer(_CodecSerializer):
    """MessagePack via the ``msgpack`` package (``pip install redset[msgpack]``).

    Maps keep their insertion order, so equal dicts built in a different
    order are different members: use JSONSerializer when deduplication must
    not depend on key order.
    """

    _redset_codec = CODEC_MSGPACK

    def __init__(self) -> None:
        try:
            import msgpack  # noqa: F401
        except ImportError:
            raise ImportError("MsgpackSerializer needs msgpack: pip install redset[msgpack]") from None


class NamedtupleSerializer(Serializer):
    """Store a namedtuple as the JSON object of its ``_asdict()`` (as 0.5.1 did).

    The JSON text is exactly what 0.5.1 wrote (``json.dumps`` defaults), so
    members written by 0.5.1 and by 1.0 are equal and deduplicate.

    :param NTClass: the namedtuple class to load members into.
    """

    def __init__(self, NTClass: Type[Any]) -> None:
        self.NTClass = NTClass

    def loads(self, str_from_redis: Any) -> Any:
        """Load a member into ``NTClass(**obj)``."""
        return self.NTClass(**json.loads(str_from_redis))

    def dumps(self, nt_instance: Any) -> str:
        """Dump a namedtuple as a JSON object."""
        return json.dumps(nt_instance._asdict())


def codec_of(serializer: Any) -> "tuple[int, Callable[[Any], Any] | None, Callable[[Any], Any] | None]":
    """Return ``(codec_id, dumps, loads)`` for the pipeline to run ``serializer``."""
    codec = getattr(serializer, "_redset_codec", CODEC_CUSTOM)
    if codec != CODEC_CUSTOM:
        return codec, None, None
    return CODEC_CUSTOM, serializer.dumps, serializer.loads
