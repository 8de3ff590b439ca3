"""Plans that look without popping, and ``clear``/``discard``."""
from __future__ import annotations

import time
from typing import Any, List, Optional, Tuple

from redset import scripts
from redset._core.calls import call, call_many, script
from redset._core.config import SetConfig
from redset._core.steps import Plan
from redset.stats import InFlightItem, SetStats, taken_at

__all__ = ["count", "score", "peek", "peek_score", "available", "clear", "discard", "zcard", "in_flight",
           "dead_count", "head_pairs", "stats", "in_flight_items"]


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
    return int((yield from call(cfg._wire_impl, ("GET", cfg._lease_keys[2]))) or 0)


def dead_count(cfg: SetConfig) -> Plan[int]:
    """The number of items in the dead-letter set."""
    if cfg._shard_sets is not None:
        return (yield from sharding.dead_count(cfg))
    return (yield from zcard(cfg, cfg._lease_keys[4]))


def head_pairs(cfg: SetConfig, n: int, expired: bool = False) -> Plan[List[Tuple[bytes, float]]]:
    """The ``n`` lowest ``(member, score)`` pairs (ScheduledSet: due ones).

    ``expired``: if a lease in flight has expired, answer ``[(member,
    -inf)]`` for it instead (a leased take would reclaim it first).
    """
    wire = cfg._wire_impl
    now = wire.format_score(time.time())
    if cfg._due_only:
        args: Tuple[Any, ...] = ("ZRANGEBYSCORE", cfg._key, "-inf", now, "WITHSCORES", "LIMIT", 0, n)
    else:
        args = ("ZRANGE", cfg._key, 0, n - 1, "WITHSCORES")
    if not expired:
        return wire.decode_scored((yield from call(wire, args)))
    replies = yield from call_many(wire, (args, ("ZRANGEBYSCORE", cfg._lease_keys[1], "-inf", now, "LIMIT", 0, 1)))
    if replies[1]:
        return [(replies[1][0], float("-inf"))]
    return wire.decode_scored(replies[0])


def _float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def stats(cfg: SetConfig) -> Plan[SetStats]:
    """The set's figures, in one script call (see :class:`redset.stats.SetStats`)."""
    if cfg._shard_sets is not None:
        return (yield from sharding.stats(cfg))  # type: ignore[no-any-return]
    wire = cfg._wire_impl
    now = time.time()
    keys = cfg._lease_keys
    reply = yield from script(wire, scripts.STATS, (keys[0], keys[1], keys[2], keys[4]), (wire.format_score(now),))
    length, due, head, later, inflight, _first_deadline, info, dead = (list(reply) + [None] * 8)[:8]
    head_score = _float(head)
    oldest_age: Optional[float] = None
    if cfg._time_scores:
        oldest_age = max(0.0, now - head_score) if head_score is not None else 0.0
    lease_age = 0.0
    if int(inflight or 0) and info is not None:
        started = taken_at(_text(info))
        lease_age = max(0.0, now - started) if started is not None else 0.0
    return SetStats(
        name=cfg.name, length=int(length), due=int(due) if cfg._due_only else int(length),
        oldest_age=oldest_age, next_due=_float(later) if cfg._due_only else None,
        in_flight=int(inflight or 0), oldest_lease_age=lease_age, dead=int(dead or 0), time=now,
        lowest_score=head_score,
    )


def in_flight_items(cfg: SetConfig, num: int) -> Plan[List[InFlightItem]]:
    """Up to ``num`` leases in flight, earliest deadline first (a listing of
    several reads, not one snapshot: a batch settled in between is left out)."""
    if cfg._shard_sets is not None:
        return (yield from sharding.in_flight_items(cfg, num))
    wire = cfg._wire_impl
    num = int(num)
    batches = wire.decode_scored((yield from call(wire, ("ZRANGE", cfg._lease_keys[1], 0, num - 1, "WITHSCORES"))))
    if not batches:
        return []
    replies = yield from call_many(wire, [("ZRANGE", cfg._batch_prefix + _text(t), 0, num - 1, "WITHSCORES")
                                          for t, _ in batches])
    found = [(_text(t), deadline, pair) for (t, deadline), reply in zip(batches, replies)
             for pair in wire.decode_scored(reply)][:num]
    if not found:
        return []
    counts = yield from call(wire, ["ZMSCORE", cfg._lease_keys[3]] + [pair[0] for _, _, pair in found])
    out = []
    for (token, deadline, (member, score)), before in zip(found, counts):
        out.append(InFlightItem(item=cfg._load(member), score=score,
                                deliveries=int(float(before or 0)) + (0 if token.endswith(".held") else 1),
                                deadline=deadline, taken_at=taken_at(token)))
    return out


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
    wire = cfg._wire_impl
    main, inflight, leased, deliveries, dead = cfg._lease_keys
    tokens = yield from call(wire, ("ZRANGE", inflight, 0, -1))
    batches = [cfg._batch_prefix + _text(t) for t in tokens]
    others: List[Any] = [inflight, leased, deliveries, cfg._index_key, cfg._wake_key, cfg._waiters_key]
    if not keep_dead_letters:
        others.append(dead)
    commands: List[Any] = [("DEL", cfg._key), ["DEL"] + others]
    commands += [["DEL"] + batches[i:i + 1000] for i in range(0, len(batches), 1000)]
    replies = yield from call_many(wire, commands)
    return int(replies[0])


def discard(cfg: SetConfig, item: Any) -> Plan[bool]:
    """Remove ``item``; True if it was in the set."""
    if cfg._shard_sets is not None:
        return (yield from sharding.discard(cfg, item))
    return bool((yield from call(cfg._wire_impl, ("ZREM", cfg._key, cfg._dump(item)))))


# Last: the sharded plans build on the plans above.
from redset._core import sharding  # noqa: E402
