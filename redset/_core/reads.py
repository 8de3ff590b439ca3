"""Plans that look without popping, and ``clear``/``discard``."""
from __future__ import annotations

import time
from typing import Any, List, Optional, Tuple

from redset._core.calls import call, call_many
from redset._core.config import SetConfig
from redset._core.steps import Plan

__all__ = ["count", "score", "peek", "peek_score", "available", "clear", "discard", "zcard", "in_flight",
           "dead_count", "head_pairs"]


def zcard(cfg: SetConfig, key: Any) -> Plan[int]:
    """ZCARD of one of the set's keys."""
    return int((yield from call(cfg._wire_impl, ("ZCARD", key))))


def count(cfg: SetConfig) -> Plan[int]:
    """The number of items in the set (ZCARD)."""
    if cfg._shard_sets is not None:
        return (yield from sharding.count(cfg))
    return (yield from zcard(cfg, cfg._key))


def in_flight(cfg: SetConfig) -> Plan[int]:
    """The number of leased items not yet settled."""
    if cfg._shard_sets is not None:
        return (yield from sharding.in_flight(cfg))
    return (yield from zcard(cfg, cfg._lease_keys[1]))


def dead_count(cfg: SetConfig) -> Plan[int]:
    """The number of items in the dead-letter set."""
    if cfg._shard_sets is not None:
        return (yield from sharding.dead_count(cfg))
    return (yield from zcard(cfg, cfg._lease_keys[4]))


def head_pairs(cfg: SetConfig, n: int) -> Plan[List[Tuple[bytes, float]]]:
    """The ``n`` lowest ``(member, score)`` pairs (ScheduledSet: due ones)."""
    wire = cfg._wire_impl
    if cfg._due_only:
        args: Tuple[Any, ...] = ("ZRANGEBYSCORE", cfg._key, "-inf", wire.format_score(time.time()),
                                 "WITHSCORES", "LIMIT", 0, n)
    else:
        args = ("ZRANGE", cfg._key, 0, n - 1, "WITHSCORES")
    return wire.decode_scored((yield from call(wire, args)))


def score(cfg: SetConfig, item: Any) -> Plan[Optional[float]]:
    """The score of ``item``, or None if it is not in the set."""
    if cfg._shard_sets is not None:
        return (yield from sharding.score(cfg, item))
    reply = yield from call(cfg._wire_impl, ("ZSCORE", cfg._key, cfg._dump(item)))
    return None if reply is None else float(reply)


def _peek_raw(cfg: SetConfig, position: int, with_score: bool) -> Plan[Any]:
    wire = cfg._wire_impl
    args: Tuple[Any, ...]
    if cfg._due_only:
        args = ("ZRANGEBYSCORE", cfg._key, "-inf", wire.format_score(time.time()))
        if with_score:
            args += ("WITHSCORES",)
        args += ("LIMIT", position, 1)
    else:
        args = ("ZRANGE", cfg._key, position, position)
        if with_score:
            args += ("WITHSCORES",)
    return (yield from call(wire, args))


def peek(cfg: SetConfig, position: int) -> Plan[Any]:
    """The item at rank ``position`` (ScheduledSet: among due items).

    :raises KeyError: if there is no item at that position.
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.peek(cfg, position))
    reply = yield from _peek_raw(cfg, position, False)
    if not reply:
        raise KeyError("%s has no item at position %d" % (cfg.name, position))
    return cfg._load(reply[0])


def peek_score(cfg: SetConfig) -> Plan[Optional[float]]:
    """The score of the next item to pop, or None if there is none."""
    if cfg._shard_sets is not None:
        return (yield from sharding.peek_score(cfg))
    reply = yield from _peek_raw(cfg, 0, True)
    pairs = cfg._wire_impl.decode_scored(reply)
    return pairs[0][1] if pairs else None


def available(cfg: SetConfig) -> Plan[int]:
    """The number of items that are due now."""
    if cfg._shard_sets is not None:
        return (yield from sharding.available(cfg))
    wire = cfg._wire_impl
    return int((yield from call(wire, ("ZCOUNT", cfg._key, "-inf", wire.format_score(time.time())))))


def clear(cfg: SetConfig, keep_dead_letters: bool) -> Plan[int]:
    """Delete the set and every key it owns; the set's own DEL reply."""
    if cfg._shard_sets is not None:
        return (yield from sharding.clear(cfg, keep_dead_letters))
    main, inflight, leases, counts, dead = cfg._lease_keys
    others: List[Any] = [inflight, leases, counts, cfg._wake_key, cfg._waiters_key]
    if not keep_dead_letters:
        others.append(dead)
    replies = yield from call_many(cfg._wire_impl, (("DEL", cfg._key), ["DEL"] + others))
    return int(replies[0])


def discard(cfg: SetConfig, item: Any) -> Plan[bool]:
    """Remove ``item``; True if it was in the set."""
    if cfg._shard_sets is not None:
        return (yield from sharding.discard(cfg, item))
    return bool((yield from call(cfg._wire_impl, ("ZREM", cfg._key, cfg._dump(item)))))


# Last: the sharded plans build on the plans above.
from redset._core import sharding  # noqa: E402
