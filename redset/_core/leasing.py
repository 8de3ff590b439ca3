"""Plans of at-least-once delivery: leased takes, settles, dead letters.

``take(n, lease=seconds)`` moves items, in one Lua script, from the set into
an in-flight sorted set scored by the lease deadline. ``ack`` removes an
item for good, ``nack`` puts it back, ``extend`` renews the lease. Leases
that expire are reclaimed by the next leased take of any consumer, at the
item's original score; after ``max_deliveries`` deliveries an item goes to
the dead-letter set instead.
"""
from __future__ import annotations

import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from redset import scripts
from redset._core.adds import wake
from redset._core.calls import call, script
from redset._core.config import SetConfig, new_token
from redset._core.failures import handle_failures
from redset._core.steps import ONCE, POPS, Plan
from redset.exceptions import StaleLeaseError

__all__ = ["lease_take", "settle", "nack", "extend", "ack_many", "release_many", "dead_letters",
           "requeue_dead"]

#: ``make(member, item, score, deliveries, token, deadline)`` -> a lease handle.
LeaseFactory = Callable[[bytes, Any, float, int, str, float], Any]


def lease_take(cfg: SetConfig, num: int, lease: float, make: LeaseFactory) -> Plan[Tuple[List[Any], int]]:
    """Lease up to ``num`` items; return their handles and how many failed to load."""
    wire = cfg._wire_impl
    now = time.time()
    deadline = now + lease
    token = new_token()
    reply = yield from script(
        wire, scripts.LEASE_TAKE, cfg._lease_keys,
        (wire.format_score(now), repr(float(deadline)), num, cfg.max_deliveries or 0, token,
         "1" if cfg._due_only else "0"),
        POPS,
    )
    out: List[Any] = []
    failures: List[Tuple[bytes, BaseException]] = []
    for i in range(0, len(reply), 3):
        member = reply[i]
        if type(member) is str:
            member = member.encode("utf-8")
        try:
            item = wire.decode_member(cfg._codec, cfg._loads, member)
        except (RuntimeError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:
            failures.append((member, exc))
            # Keep nothing in flight that no one can ack.
            yield from script(wire, scripts.LEASE_SETTLE, cfg._lease_keys, (member, token, "ack", "", 0))
            continue
        out.append(make(member, item, float(reply[i + 1]), int(reply[i + 2]), token, deadline))
    if failures:
        yield from handle_failures(cfg, out, failures)
    return out, len(failures)


def settle(cfg: SetConfig, member: bytes, token: str, item: Any, op: str, arg: str = "") -> Plan[int]:
    """Ack, nack or extend one lease; return the script's answer (1 done, 2 dead).

    Not re-sent after a lost connection (except ``extend``): a repeat of an
    applied settle would find the lease gone and misreport it as stale.

    :raises StaleLeaseError: the lease is no longer held with this token.
    """
    result = int((yield from script(
        cfg._wire_impl, scripts.LEASE_SETTLE, cfg._lease_keys,
        (member, token, op, arg, cfg.max_deliveries or 0), ONCE if op != "extend" else 0,
    )))
    if result == 0:
        raise StaleLeaseError(
            "%s of %r on %r rejected: this lease (token %s) is no longer held; it expired "
            "and was reclaimed, possibly by another consumer, or was already settled"
            % (op, item, cfg.name, token), cfg.name, token,
        )
    return result


def nack(cfg: SetConfig, lease: Any, score: Optional[float], delay: Optional[float]) -> Plan[bool]:
    """Put a leased item back; False if it went to the dead letters instead.

    ``score``: requeue at that score. ``delay`` on a ScheduledSet: due
    ``delay`` seconds from now (its score is its due time). ``delay`` on a
    SortedSet/TimeSortedSet: held back ``delay`` seconds, then back at its
    original score (its priority is kept). Neither: at once, original score.
    """
    if score is not None and delay is not None:
        raise ValueError("give score or delay, not both")
    if delay is not None and not delay >= 0:
        raise ValueError("delay must be >= 0 seconds, got %r" % (delay,))
    wire = cfg._wire_impl
    if delay is not None and cfg._due_only:
        score = time.time() + delay
    if delay is not None and not cfg._due_only:
        op, arg = "hold", repr(time.time() + delay)
    else:
        op, arg = "nack", "" if score is None else wire.format_score(score).decode()
    result = yield from settle(cfg, lease.member, lease.token, lease.item, op, arg)
    if result == 1 and op == "nack":
        yield from wake(cfg, 1)
    return result == 1


def extend(cfg: SetConfig, lease: Any, seconds: float) -> Plan[float]:
    """Renew a lease to expire ``seconds`` from now; return the new deadline."""
    deadline = time.time() + seconds
    yield from settle(cfg, lease.member, lease.token, lease.item, "extend", repr(float(deadline)))
    return deadline


def release_many(cfg: SetConfig, leases: Sequence[Any]) -> Plan[int]:
    """Put back leased items never handed to user code, uncharged.

    They return at their original score and their delivery count is as
    before the take, so they are never dead-lettered for it.
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.release_many(cfg, leases))
    released = 0
    for start in range(0, len(leases), 1000):
        args: List[Any] = []
        for lease in leases[start:start + 1000]:
            args.extend((lease.member, lease.token))
        released += int((yield from script(cfg._wire_impl, scripts.LEASE_RELEASE_MANY, cfg._lease_keys,
                                           args, ONCE)))
    for lease in leases:
        lease.settled = True
    if released:
        yield from wake(cfg, released)
    return released


def ack_many(cfg: SetConfig, leases: Sequence[Any]) -> Plan[Tuple[int, List[Any]]]:
    """Ack leases in one script call per 1,000; return (acked, stale handles).

    Handles are marked ``settled`` as their acks are confirmed.
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.ack_many(cfg, leases))
    acked = 0
    stale: List[Any] = []
    for start in range(0, len(leases), 1000):
        chunk = leases[start:start + 1000]
        args: List[Any] = []
        for lease in chunk:
            args.extend((lease.member, lease.token))
        results = yield from script(cfg._wire_impl, scripts.LEASE_ACK_MANY, cfg._lease_keys, args, ONCE)
        for lease, ok in zip(chunk, results):
            if int(ok):
                lease.settled = True
                acked += 1
            else:
                stale.append(lease)
    return acked, stale


def dead_letters(cfg: SetConfig, num: int) -> Plan[List[Any]]:
    """Up to ``num`` items in the dead-letter set, without removing them."""
    if cfg._shard_sets is not None:
        return (yield from sharding.dead_letters(cfg, num))
    reply = yield from call(cfg._wire_impl, ("ZRANGE", cfg._lease_keys[4], 0, int(num) - 1))
    return [cfg._load(raw) for raw in reply]


def requeue_dead(cfg: SetConfig, num: int) -> Plan[int]:
    """Move up to ``num`` dead letters back into the set at their original scores."""
    if cfg._shard_sets is not None:
        return (yield from sharding.requeue_dead(cfg, num))
    moved = int((yield from script(cfg._wire_impl, scripts.REQUEUE_DEAD, cfg._lease_keys, (int(num),))))
    if moved:
        yield from wake(cfg, moved)
    return moved


# Last: the sharded plans build on the plans above.
from redset._core import sharding  # noqa: E402
