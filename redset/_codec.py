"""The typed face of the wire codec: what ``redset._wire_c`` (compiled) and
``redset._wire_py`` (pure Python) both provide.

Callers hold the codec as a :class:`Codec` (never as a bare module), so mypy
checks every call into it; both modules are checked against this protocol in
:mod:`redset._wire`, where one of them is picked.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol, Sequence, Tuple, Type, Union

Loads = Optional[Callable[[Any], Any]]
Failures = List[Tuple[bytes, BaseException]]

__all__ = ["Codec", "PopReaderLike", "Loads", "Failures"]


class PopReaderLike(Protocol):
    """A streaming parser of ``ZPOPMIN``-shaped replies that decodes members."""

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> None: ...
    def pending(self) -> bool: ...
    def header(self) -> int: ...
    def complete(self) -> bool: ...
    def gets(
        self, failures: Failures, raw: Optional[List[Tuple[bytes, float]]] = None,
        leases: Optional[Tuple[Any, ...]] = None,
    ) -> Union[List[Any], str, bool]: ...


class Codec(Protocol):
    """The functions and types of one wire codec module."""

    @property
    def NATIVE_POP_READER(self) -> bool: ...
    @property
    def ErrorReply(self) -> Type[str]: ...
    @property
    def PopReader(self) -> Callable[[int, Loads, bool], PopReaderLike]: ...

    def format_score(self, score: Any, index: Optional[int] = None, sent: int = 0) -> bytes: ...
    def json_dumps_canonical(self, obj: Any, use_orjson: bool = True) -> bytes: ...
    def encode_member(
        self, codec: int, dumps: Optional[Callable[[Any], Any]], item: Any, index: Optional[int] = None,
        sent: int = 0,
    ) -> bytes: ...
    def decode_member(self, codec: int, loads: Loads, raw: bytes) -> Any: ...
    def pack_command(self, args: Sequence[Any]) -> bytes: ...
    def pack_zadd(
        self, key: bytes, flags: Tuple[bytes, ...], items: Sequence[Any], scores: Sequence[Any], codec: int,
        dumps: Optional[Callable[[Any], Any]], offset: int = 0, sent: int = 0,
    ) -> bytes: ...
    def decode_items(
        self, reply: Any, codec: int, loads: Loads, failures: Failures, with_scores: bool
    ) -> List[Any]: ...
    def decode_scored(self, reply: Any) -> List[Tuple[bytes, float]]: ...
    def whole_batch(self, leases: List[Any], batch: Any) -> bool: ...
