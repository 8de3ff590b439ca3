"""Pure-Python batch encoder and decoder (the twin of ``redset._wire_c``).

Everything here turns Python values into RESP request bytes and turns parsed
replies back into Python values. Nothing here knows about sockets: the
drivers in :mod:`redset._io` move the bytes. ``redset._wire_c``
exports the same names with the same signatures and gives byte-identical
output and identical exceptions; only :mod:`redset._wire` imports either.

The code lives in :mod:`redset._wire_py_codec` (encoding, member codecs,
reply decoding) and :mod:`redset._wire_py_reader` (``PopReader``); this
module is the twin's one face, with the compiled module's names.
"""
from __future__ import annotations

from redset._wire_py_codec import (
    CODEC_BYTES,
    CODEC_CUSTOM,
    CODEC_DEFAULT,
    CODEC_INT,
    CODEC_JSON,
    CODEC_MSGPACK,
    CODEC_STR,
    decode_items,
    decode_member,
    decode_scored,
    encode_member,
    format_score,
    json_dumps_canonical,
    pack_command,
    pack_zadd,
)
from redset._wire_py_reader import LEASE_SLOTS, NATIVE_POP_READER, ErrorReply, PopReader, whole_batch

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
    "LEASE_SLOTS",
    "whole_batch",
]
