"""Typed stub of the compiled wire codec; it mirrors ``redset._wire_py``."""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

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

CODEC_DEFAULT: int
CODEC_STR: int
CODEC_BYTES: int
CODEC_INT: int
CODEC_JSON: int
CODEC_MSGPACK: int
CODEC_CUSTOM: int

def format_score(score: Any, index: Optional[int] = None, sent: int = 0) -> bytes: ...
def json_dumps_canonical(obj: Any, use_orjson: bool = True) -> bytes: ...
def encode_member(
    codec: int, dumps: Optional[Callable[[Any], Any]], item: Any, index: Optional[int] = None, sent: int = 0
) -> bytes: ...
def decode_member(codec: int, loads: Optional[Callable[[Any], Any]], raw: bytes) -> Any: ...
def pack_command(args: Sequence[Any]) -> bytes: ...
def pack_zadd(
    key: bytes,
    flags: Tuple[bytes, ...],
    items: Sequence[Any],
    scores: Sequence[Any],
    codec: int,
    dumps: Optional[Callable[[Any], Any]],
    offset: int = 0,
    sent: int = 0,
) -> bytes: ...
def decode_items(
    reply: Any,
    codec: int,
    loads: Optional[Callable[[Any], Any]],
    failures: List[Tuple[bytes, BaseException]],
    with_scores: bool,
) -> List[Any]: ...
def decode_scored(reply: Any) -> List[Tuple[bytes, float]]: ...


NATIVE_POP_READER: bool
LEASE_SLOTS: Tuple[str, ...]

def whole_batch(leases: List[Any], batch: Any) -> bool: ...

class ErrorReply(str): ...

class PopReader:
    def __init__(self, codec: int, loads: Optional[Callable[[Any], Any]], with_scores: bool) -> None: ...
    def feed(self, data: Union[bytes, bytearray, memoryview]) -> None: ...
    def pending(self) -> bool: ...
    def header(self) -> int: ...
    def complete(self) -> bool: ...
    def gets(
        self, failures: List[Tuple[bytes, BaseException]], raw: Optional[List[Tuple[bytes, float]]] = None,
        leases: Optional[Tuple[Any, ...]] = None,
    ) -> Union[List[Any], ErrorReply, bool]: ...
