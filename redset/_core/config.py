"""What a set is, apart from any I/O: its keys, codec, policies and input checks.

:class:`SetConfig` is the base of the sync facade (:mod:`redset.sets`) and
the asyncio one (:mod:`redset.asyncio`); the plans in :mod:`redset._core`
read a set's configuration from it.
"""
from __future__ import annotations

import itertools
import os
import time
import zlib
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from redis.crc import key_slot

from redset import _wire
from redset._codec import Codec
from redset._wire_py import CODEC_CUSTOM, CODEC_DEFAULT
from redset.serializers import codec_of

__all__ = ["SetConfig", "lease_keys", "new_token", "socket_pops", "DEFAULT_CHUNK_SIZE"]

# Read pops straight from the socket with the codec's PopReader: "1" always,
# "0" never; unset: when the codec's reader parses in C (NATIVE_POP_READER),
# or when the connection's own parser is pure Python (no hiredis/libvalkey).
_SOCKET_POPS = os.environ.get("REDSET_SOCKET_POPS", "")


def socket_pops(wire: Any) -> Optional[bool]:
    """Whether drivers read pop replies with the codec's own PopReader: True,
    False, or None for "only on connections whose parser is pure Python"
    (the pure-Python PopReader then beats parsing and decoding apart: about
    2x on W1 drains through valkey-py without libvalkey)."""
    if _SOCKET_POPS in ("0", "1"):
        return _SOCKET_POPS == "1"
    return True if getattr(wire, "NATIVE_POP_READER", False) else None

# A chunk of input for add_many: (items, scores, index of items[0] in the input).
Chunk = Tuple[Sequence[Any], Sequence[Any], int]

#: Items per ZADD command in :meth:`SortedSet.add_many`.
DEFAULT_CHUNK_SIZE = 1000

_DUPLICATE_POLICIES = {
    "update": (False, False, False, False),  # replace the score (plain ZADD)
    "keep": (True, False, False, False),  # keep the first score (ZADD NX)
    "max": (False, False, True, False),  # keep the higher score (ZADD GT)
    "min": (False, False, False, True),  # keep the lower score (ZADD LT)
}
_DECODE_ERROR_POLICIES = ("skip", "raise")


def _default_scorer(item: Any) -> float:
    return 0


def _time_scorer(item: Any) -> float:
    return time.time()


def _zadd_flags(nx: bool, xx: bool, gt: bool, lt: bool) -> Tuple[bytes, ...]:
    """Check a combination of ZADD flags and return them as arguments.

    :raises ValueError: for combinations the server rejects.
    """
    if nx and (xx or gt or lt):
        raise ValueError("nx cannot be combined with xx, gt or lt")
    if gt and lt:
        raise ValueError("gt and lt cannot be combined")
    flags = []
    if nx:
        flags.append(b"NX")
    if xx:
        flags.append(b"XX")
    if gt:
        flags.append(b"GT")
    if lt:
        flags.append(b"LT")
    return tuple(flags)



#: The most shards a set may have.
MAX_SHARDS = 256
_SLOTS = 16384


def check_shards(shards: Any) -> int:
    """Check the ``shards`` argument of a set; return it as an int (1: not sharded)."""
    if shards is None:
        return 1
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise TypeError("shards must be an int, got %s" % type(shards).__name__)
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError("shards must be between 1 and %d, got %d" % (MAX_SHARDS, shards))
    return int(shards)


def shard_names(name: str, shards: int) -> List[str]:
    """The keys of the ``shards`` shards of the set ``name``.

    Shard ``i`` is ``{<name>:<i>}`` (braces of ``name`` dropped), or
    ``{<name>:<i>.<j>}`` for the first ``j`` that puts its hash slot in the
    ``i``-th of ``shards`` equal slot ranges: a cluster made with
    ``valkey-cli --cluster create`` (or ``redis-cli``) gives each primary an
    equal range of slots, so K shards on M primaries (K a multiple of M) are
    spread evenly over them. Every client computes the same names.
    """
    base = name.replace("{", "").replace("}", "")
    out = []
    for i in range(shards):
        j = 0
        while True:
            tag = "%s:%d" % (base, i) if j == 0 else "%s:%d.%d" % (base, i, j)
            if key_slot(tag.encode("utf-8")) * shards // _SLOTS == i:
                break
            j += 1
        out.append("{%s}" % tag)
    return out


def shard_index(member: bytes, shards: int) -> int:
    """The shard of an encoded member: ``crc32(member) % shards``."""
    return zlib.crc32(member) % shards


def lease_keys(name: str) -> Tuple[str, str, str, str, str]:
    """Return the keys ``(main, inflight, leased, deliveries, dead)`` of a set.

    They share the main key's hash slot: when ``name`` has a hash tag
    (``{...}``) the suffixes keep it; otherwise the companions are tagged
    with the whole name (``{name}:inflight`` hashes like ``name``). A name
    with a ``}`` but no valid tag (``{}x``) cannot be tagged that way; its
    companions are plain suffixes, which work on one server but may land in
    other slots on a cluster: give such a set a hash tag.
    """
    start = name.find("{")
    end = name.find("}", start + 1) if start >= 0 else -1
    tagged = start >= 0 and end > start + 1
    base = name if (tagged or "}" in name) else "{%s}" % name
    return (name, base + ":inflight", base + ":leased", base + ":deliveries", base + ":dead")


def new_token() -> str:
    """A token naming one leased take or one waiter: the time it was made
    (hex milliseconds, read by ``stats()`` as the lease's age), a dot, and
    64 random bits."""
    return "%x.%s" % (int(time.time() * 1000), os.urandom(8).hex())


class SetConfig:
    """A set's client, configuration and driver, shared by the sync and asyncio
    classes; the plans in :mod:`redset._core` read it. The constructor's
    parameters are documented on :class:`redset.SortedSet`.

    Each facade sets three hooks: :meth:`_check_client` (refuse a client of
    the wrong kind before anything is sent), :attr:`_driver_factory` (the
    driver that runs plans on the client) and :attr:`_lock_class`.
    """

    #: Builds the driver for (client, codec, socket_pops, key); set by each facade.
    _driver_factory: Callable[[Any, Codec, Optional[bool], bytes], Any]
    #: The class of :attr:`lock`; set by each facade.
    _lock_class: Callable[..., Any]
    #: Builds the driver of a sharded set (from the set); set by each facade.
    _shard_driver_factory: Callable[[Any], Any]

    @staticmethod
    def _check_client(client: Any, cls_name: str) -> None:
        """Raise TypeError for a client this facade cannot drive."""

    _default_scorer: Callable[[Any], float] = staticmethod(_default_scorer)
    #: Only items whose score is <= now may be popped (ScheduledSet).
    _due_only = False
    #: Scores are UNIX times (TimeSortedSet, ScheduledSet): a set has an age.
    _time_scores = False
    #: The requests of the last plain pop (:func:`redset._core.pops.pop_items`
    #: makes them once): ``(num, codec module, codec, loads, args, (Send, Recv))``.
    _pop_steps: Any = None

    def __init__(
        self,
        redis_client: Any,
        name: str,
        scorer: Optional[Callable[[Any], float]] = None,
        serializer: Any = None,
        lock_timeout: Optional[float] = None,
        lock_expires: Optional[float] = None,
        *,
        duplicates: Optional[str] = None,
        on_decode_error: str = "skip",
        dead_letter_key: Optional[str] = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_deliveries: Optional[int] = None,
        leased: bool = False,
        shards: Optional[int] = None,
    ) -> None:
        self._check_client(redis_client, type(self).__name__)
        nshards = check_shards(shards)
        if duplicates is not None and duplicates not in _DUPLICATE_POLICIES:
            raise ValueError(
                "duplicates must be one of %s, not %r" % (", ".join(_DUPLICATE_POLICIES), duplicates)
            )
        if on_decode_error not in _DECODE_ERROR_POLICIES:
            raise ValueError("on_decode_error must be 'skip' or 'raise', not %r" % (on_decode_error,))
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1, got %d" % chunk_size)
        if max_deliveries is not None and int(max_deliveries) < 1:
            raise ValueError("max_deliveries must be >= 1, got %r" % (max_deliveries,))
        self._name = name
        self._key = name.encode("utf-8") if isinstance(name, str) else bytes(name)
        self._wire_impl: Codec = _wire.impl
        self.scorer = scorer or self._default_scorer
        self.serializer = serializer
        self.duplicates = duplicates
        self.on_decode_error = on_decode_error
        self.dead_letter_key = dead_letter_key
        self.chunk_size = chunk_size
        self.max_deliveries = None if max_deliveries is None else int(max_deliveries)
        self.leased = bool(leased)
        self._lease_keys = lease_keys(name if isinstance(name, str) else self._key.decode("utf-8", "replace"))
        base = self._lease_keys[1].rsplit(":", 1)[0]
        self._wake_key = base + ":wake"
        self._waiters_key = base + ":waiters"
        #: Leases: the set of members in flight, and the prefix of batch keys.
        self._index_key = base + ":leased-members"
        self._one_command_at_a_time = False
        self._batch_prefix = base + ":lease:"
        self._redis = redis_client
        self._driver: Any = None
        self.lock = self._lock_class(redis_client, "%s__lock" % (name,), expires=lock_expires,
                                     timeout=lock_timeout)
        self._shard_turn = 0
        self._shard_sets: Optional[List[Any]] = None
        self._raw_sets: List[Any] = []
        if nshards > 1:
            # The shards: ordinary sets of this class under their own keys
            # (``_raw_sets``: the same keys with the default codec, for adds
            # of members the sharded set has already encoded).
            names = shard_names(self._lease_keys[0], nshards)
            common = dict(duplicates=duplicates, chunk_size=chunk_size, max_deliveries=max_deliveries,
                          leased=leased)
            dead = None if dead_letter_key is None else dead_letter_key.replace("{", "").replace("}", "")
            self._shard_sets = [
                type(self)(redis_client, n, scorer, serializer, lock_timeout, lock_expires,
                           on_decode_error=on_decode_error, **common,  # type: ignore[arg-type]
                           dead_letter_key=None if dead is None else "%s:%s" % (dead, n))
                for n in names]
            self._raw_sets = [type(self)(redis_client, n, **common) for n in names]  # type: ignore[arg-type]
            # Only a sharded set pays for passing settings on: a __setattr__
            # on every set cost ~530 instructions per leased item (callgrind).
            self.__class__ = _passing_settings_on(type(self))

    @property
    def shards(self) -> int:
        """How many shards this set is spread over (1: not sharded)."""
        return 1 if self._shard_sets is None else len(self._shard_sets)

    @property
    def shard_sets(self) -> List[Any]:
        """The shards of a sharded set (ordinary sets; empty if not sharded).

        Each holds the members whose ``crc32`` maps to it; use them to look at
        one shard (its length, or its node on a cluster). Adding to a shard
        directly bypasses that mapping: an item added to the wrong shard is
        not found by ``contains``/``score``/``discard`` and may be stored twice.
        """
        return list(self._shard_sets or ())

    def _owns(self, lease: Any) -> bool:
        """Whether ``lease`` came from this set (or one of its shards)."""
        return self._owns_owner(lease._set)

    def _owns_owner(self, owner: Any) -> bool:
        """Whether ``owner`` is this set or one of its shards."""
        return owner is self or (self._shard_sets is not None and owner in self._shard_sets)

    @property
    def redis(self) -> Any:
        """The client this set talks through (assignable)."""
        return self._redis

    @redis.setter
    def redis(self, client: Any) -> None:
        self._check_client(client, type(self).__name__)
        self._redis = client
        self._driver = None

    @property
    def _io(self) -> Any:
        """The driver that runs this set's plans."""
        if self._driver is None and self._shard_sets is not None:
            self._driver = type(self)._shard_driver_factory(self)
        if self._driver is None:
            driver = type(self)._driver_factory(self._redis, self._wire_impl, socket_pops(self._wire_impl),
                                                self._key)
            check = getattr(driver, "check_same_slot", None)
            # A cluster driver: a leased take sends its two commands one at a time.
            self._one_command_at_a_time = check is not None
            if check is not None and self.dead_letter_key is not None:
                base = self._lease_keys[1].rsplit(":", 1)[0]
                check(self.dead_letter_key, "dead_letter_key", base + ":bad")
            self._driver = driver
        return self._driver

    @property
    def name(self) -> str:
        """The key of this set in Redis."""
        return self._name

    @property
    def serializer(self) -> Any:
        """The serializer (assignable; the codec follows)."""
        return self._serializer

    @serializer.setter
    def serializer(self, serializer: Any) -> None:
        self._serializer = serializer
        self._set_codec()

    @property
    def _wire(self) -> Codec:
        """The codec module (compiled or pure) this set uses."""
        return self._wire_impl

    @_wire.setter
    def _wire(self, module: Codec) -> None:
        self._wire_impl = module
        self._driver_changed()

    def _driver_changed(self) -> None:
        """The codec changed: the next call builds a new driver."""
        self._driver = None

    def _set_codec(self) -> None:
        serializer = getattr(self, "_serializer", None)
        dumps = getattr(serializer, "dumps", None)
        loads = getattr(serializer, "loads", None)
        if serializer is None or (dumps is None and loads is None):
            self._codec, self._dumps, self._loads = CODEC_DEFAULT, None, None
            return
        if dumps is not None and loads is not None:
            codec, dumps, loads = codec_of(serializer)
        else:
            codec = CODEC_CUSTOM
        if codec == CODEC_CUSTOM:
            if dumps is None:
                dumps = _identity
            if loads is None:
                loads = _utf8
            elif not getattr(serializer, "loads_bytes", False):
                # 0.5.1 handed loads() the member decoded to str (its
                # "str_from_redis"); a member that is not UTF-8 then fails to
                # load and goes through the decode-error policy.
                user_loads = loads
                loads = lambda raw: user_loads(raw.decode("utf-8"))  # noqa: E731
        self._codec, self._dumps, self._loads = codec, dumps, loads

    def _flags(self, nx: Optional[bool], xx: bool, gt: bool, lt: bool, default: str) -> Tuple[bytes, ...]:
        if nx is None and not (xx or gt or lt):
            nx, xx, gt, lt = _DUPLICATE_POLICIES[self.duplicates or default]
        return _zadd_flags(bool(nx), xx, gt, lt)

    def _dump(self, item: Any) -> bytes:
        return self._wire_impl.encode_member(self._codec, self._dumps, item)

    def _load(self, raw: Any) -> Any:
        if type(raw) is str:
            raw = raw.encode("utf-8")
        return self._wire_impl.decode_member(self._codec, self._loads, raw)

    def _chunks(self, items: Iterable[Any], scores: Optional[Iterable[Any]], start: int = 0) -> Iterator[Chunk]:
        size = self.chunk_size
        offset = start
        if scores is None:
            scorer = self.scorer
            it = iter(items)
            while True:
                chunk = list(itertools.islice(it, size))
                if not chunk:
                    return
                yield chunk, [scorer(item) for item in chunk], offset
                offset += len(chunk)
        if isinstance(items, (list, tuple)) and isinstance(scores, (list, tuple)):
            for first in range(0, len(items), size):
                yield items[first:first + size], scores[first:first + size], offset + first
            return
        missing = object()
        pairs = itertools.zip_longest(items, scores, fillvalue=missing)
        while True:
            chunk_pairs = list(itertools.islice(pairs, size))
            if not chunk_pairs:
                return
            chunk_items = [p[0] for p in chunk_pairs]
            chunk_scores = [p[1] for p in chunk_pairs]
            if missing in chunk_items or missing in chunk_scores:
                raise ValueError("items and scores differ in length (after %d items)"
                                 % (offset + min(chunk_items.index(missing) if missing in chunk_items
                                                 else len(chunk_items),
                                                 chunk_scores.index(missing) if missing in chunk_scores
                                                 else len(chunk_scores))))
            yield chunk_items, chunk_scores, offset
            offset += len(chunk_items)



class _PassesSettingsOn:
    """Mixin of a sharded set's class: a changed setting reaches its shards."""

    #: Settings a sharded set passes on to its shards when they change.
    _SHARED_SETTINGS = frozenset(("serializer", "duplicates", "on_decode_error", "chunk_size", "max_deliveries",
                                  "leased", "redis", "_wire"))
    _shard_sets: List[Any]
    _raw_sets: List[Any]

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in self._SHARED_SETTINGS:
            for shard in self._shard_sets:
                setattr(shard, name, value)
            if name not in ("serializer", "on_decode_error"):
                for shard in self._raw_sets:
                    setattr(shard, name, value)


_SHARDED_CLASSES: "dict[type, type]" = {}


def _passing_settings_on(cls: type) -> type:
    """``cls`` with :class:`_PassesSettingsOn` (one class per set class, same name)."""
    sharded = _SHARDED_CLASSES.get(cls)
    if sharded is None:
        sharded = type(cls.__name__, (_PassesSettingsOn, cls), {"__module__": cls.__module__,
                                                                  "__qualname__": cls.__qualname__})
        _SHARDED_CLASSES[cls] = sharded
    return sharded


def _identity(item: Any) -> Any:
    return item


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8")


class TimeScored:
    """Mixin: the default score is the time of add."""

    _default_scorer = staticmethod(_time_scorer)
    _time_scores = True
