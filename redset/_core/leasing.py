"""Plans of at-least-once delivery: leased takes, settles, dead letters.

``take(n, lease=seconds)`` moves up to ``n`` items, in one script whose
per-item work is all in C, from the set into a *batch*: a sorted set of its
own (``{name}:lease:<token>``, member -> original score), named by a new
token and scored by its deadline in ``{name}:inflight``. ``ack`` removes an
item for good (a whole batch acked at once is one ``DEL``), ``nack`` puts it
back, ``extend`` renews the lease. Batches that expire are reclaimed by the
next leased take of any consumer, each item at its original score; after
``max_deliveries`` deliveries an item goes to the dead-letter set instead.
See :mod:`redset.scripts` for the layout.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from redset import scripts
from redset._core import kinds
from redset._core.adds import wake
from redset._core.calls import call, follow, is_noscript, lost, script
from redset._core.config import SetConfig, new_token
from redset._core.errors import named_error
from redset._core.failures import handle_failures
from redset._core.steps import (
    ONCE, POPS, RECV_PAIRS, RECV_RAW, SAFE, Cancelled, Cmd, NotSent, Plan, Redirected, Send,
)
from redset.exceptions import StaleLeaseError

__all__ = ["lease_take", "nack", "extend", "extend_many", "ack_many", "release_many", "dead_letters",
           "requeue_dead", "ack_members"]

#: ``make(member, item, score, deliveries, token, deadline)`` -> a lease handle.
LeaseFactory = Callable[[bytes, Any, float, int, str, float], Any]

#: Members per script call of the settles (Lua's stack holds ~8,000 values).
SETTLE_CHUNK = 1000

_STAGE_SHA = scripts.sha1(scripts.LEASE_STAGE)


def _fixed_keys(cfg: SetConfig) -> List[Any]:
    """KEYS[1..5] of the batch settles: main, inflight, leased, deliveries, index."""
    keys = cfg._lease_keys
    return [keys[0], keys[1], keys[2], keys[3], cfg._index_key]


def lease_take(cfg: SetConfig, num: int, lease: float, make: LeaseFactory) -> Plan[Tuple[List[Any], int]]:
    """Lease up to ``num`` items; return their handles and how many failed to load.

    One round trip: the staging script, the read of the new batch and of
    the deliveries of its members that were delivered before. When leases
    have expired, they are reclaimed first (one more round trip) and the
    take staged again.
    """
    wire = cfg._wire_impl
    main, inflight, leased, deliveries, _dead = cfg._lease_keys
    while True:
        now = time.time()
        deadline = now + lease
        token = new_token()
        batch = cfg._batch_prefix + token
        stage = ("EVALSHA", _STAGE_SHA, 5, main, inflight, leased, cfg._index_key, batch,
                 wire.format_score(now), num, repr(float(deadline)), token,
                 "1" if cfg._due_only else "0", "1" if cfg.leased else "0")
        # The pairs last: a driver may read a pop reply with its own buffer,
        # so nothing may follow it in flight.
        commands = (stage, ("ZINTER", 2, batch, deliveries, "WEIGHTS", 0, 1, "WITHSCORES"),
                    ("ZRANGE", batch, 0, -1, "WITHSCORES"))
        replies = yield from _staged(cfg, commands, token)
        staged = replies[0]
        if isinstance(staged, kinds.RESPONSE):
            if is_noscript(staged):
                yield from call(wire, ("SCRIPT", "LOAD", scripts.LEASE_STAGE))
                continue
            raise named_error(staged, stage, "LEASE_STAGE")
        if isinstance(staged, list):  # expired leases first
            yield from _reclaim(cfg, [t.decode() if isinstance(t, bytes) else t for t in staged])
            continue
        if not staged:
            return [], 0
        break
    pairs = replies[2]
    before = dict(wire.decode_scored(replies[1])) if replies[1] else None
    out: List[Any] = []
    failures: List[Tuple[bytes, BaseException]] = []
    n = len(pairs)
    decode = wire.decode_member
    codec, loads = cfg._codec, cfg._loads
    for member, score in pairs:
        try:
            item = decode(codec, loads, member)
        except (RuntimeError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:
            failures.append((member, exc))
            continue
        handle = make(member, item, score, 1 if before is None else int(before.get(member, 0)) + 1,
                      token, deadline)
        handle._n = n
        out.append(handle)
    if failures:
        # Keep nothing in flight that no one can ack.
        yield from ack_members(cfg, token, [m for m, _ in failures])
        yield from handle_failures(cfg, out, failures)
    return out, len(failures)


def _staged(cfg: SetConfig, commands: Sequence[Sequence[Any]], token: str) -> Plan[List[Any]]:
    """Send the staging script and its two reads; return the three replies
    (the ZRANGE one as ``(member, score)`` pairs).

    Nothing is re-sent once the script may have run: a lost connection
    raises :class:`PopOutcomeUnknown` (the items, if staged, come back when
    the lease expires). A cancelled caller gets the items staged for it put
    back before :class:`Cancelled` goes on.
    """
    wire = cfg._wire_impl
    cmds = [Cmd(wire.pack_command(args), args) for args in commands]
    replies: List[Any] = []
    redirects = 0
    while True:
        sent = False
        try:
            yield Send(cmds[len(replies):])
            sent = True
            while len(replies) < 3:
                replies.append((yield (RECV_PAIRS if len(replies) == 2 else RECV_RAW)))
            return replies
        except Redirected as exc:  # the commands without a reply did not run
            redirects = yield from follow(exc, redirects, commands[len(replies)], "LEASE_STAGE")
        except NotSent as exc:
            raise exc.error
        except kinds.NETWORK as exc:
            raise lost(POPS, commands[0], exc, "the items (if staged, they come back when the lease expires)",
                       "LEASE_STAGE") from exc
        except Cancelled:
            if sent:
                try:
                    while len(replies) < 3:
                        replies.append((yield (RECV_PAIRS if len(replies) == 2 else RECV_RAW)))
                except Redirected:
                    pass
                else:
                    if isinstance(replies[2], list) and replies[2]:
                        yield from _release(cfg, [(token, [m for m, _ in replies[2]])])
            raise


def _reclaim(cfg: SetConfig, tokens: List[str]) -> Plan[int]:
    """Reclaim the expired batches of ``tokens`` (their keys declared)."""
    main, inflight, leased, deliveries, dead = cfg._lease_keys
    keys = [main, inflight, leased, deliveries, dead, cfg._index_key] + [cfg._batch_prefix + t for t in tokens]
    args = [cfg._wire_impl.format_score(time.time()), cfg.max_deliveries or 0] + tokens
    return int((yield from script(cfg._wire_impl, scripts.LEASE_RECLAIM, keys, args)))


def _by_token(leases: Sequence[Any]) -> Dict[str, List[Any]]:
    """Leases grouped by token, each member once, in the order given."""
    groups: Dict[str, List[Any]] = {}
    seen = set()
    for lease in leases:
        key = (lease.token, lease.member)
        if key in seen:
            continue
        seen.add(key)
        groups.setdefault(lease.token, []).append(lease)
    return groups


def _chunks(groups: List[Tuple[str, List[Any]]], fixed: int) -> List[List[Tuple[str, List[Any]]]]:
    """Groups packed into calls of about :data:`SETTLE_CHUNK` members; a
    group larger than that is split."""
    calls: List[List[Tuple[str, List[Any]]]] = [[]]
    size = 0
    for token, members in groups:
        for start in range(0, max(1, len(members)), SETTLE_CHUNK):
            part = members[start:start + SETTLE_CHUNK]
            if size and size + len(part) + fixed > SETTLE_CHUNK:
                calls.append([])
                size = 0
            calls[-1].append((token, part))
            size += len(part) + fixed
    return [c for c in calls if c]


def ack_many(cfg: SetConfig, leases: Sequence[Any]) -> Plan[Tuple[int, List[Any]]]:
    """Ack leases, a whole batch in one ``DEL``; return (acked, stale handles).

    Handles are marked ``settled`` as their acks are confirmed. Never
    re-sent after a lost connection (:class:`OutcomeUnknown`).
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.ack_many(cfg, leases))
    groups = _by_token(leases)
    whole: List[Tuple[str, List[Any]]] = []
    each: List[Tuple[str, List[Any]]] = []
    for token, group in groups.items():
        n = getattr(group[0], "_n", 0)
        if n and len(group) == n and all(x._n == n for x in group):
            whole.append((token, group))
        else:
            each.append((token, group))
    acked = 0
    stale: List[Any] = []
    if whole:
        keys = _fixed_keys(cfg) + [cfg._batch_prefix + t for t, _ in whole]
        args: List[Any] = _all_args(whole)
        results = yield from script(cfg._wire_impl, scripts.LEASE_ACK, keys, args, ONCE)
        for (token, group), ok in zip(whole, results):
            if int(ok):
                for lease in group:
                    lease.settled = True
                acked += len(group)
            else:
                each.append((token, group))
    for part in _chunks(each, 4):
        keys = _fixed_keys(cfg) + [cfg._batch_prefix + t for t, _ in part]
        args = []
        for token, group in part:
            args.extend((token, "each", len(group), len(group)))
            args.extend(x.member for x in group)
        results = yield from script(cfg._wire_impl, scripts.LEASE_ACK, keys, args, ONCE)
        flat = [x for _, group in part for x in group]
        for lease, ok in zip(flat, results):
            if int(ok):
                lease.settled = True
                acked += 1
            else:
                stale.append(lease)
    return acked, stale


def _all_args(whole: List[Tuple[str, List[Any]]]) -> List[Any]:
    """ARGV of LEASE_ACK for batches acked whole: token, "all", the batch
    size, how many members follow, then the members whose deliveries entry
    must go (those delivered before)."""
    args: List[Any] = []
    for token, group in whole:
        again = [x.member for x in group if x.deliveries > 1]
        args.extend((token, "all", len(group), len(again)))
        args.extend(again)
    return args


def ack_members(cfg: SetConfig, token: str, members: Sequence[bytes]) -> Plan[int]:
    """Ack raw members of one batch (items that failed to load)."""
    done = 0
    for start in range(0, len(members), SETTLE_CHUNK):
        part = list(members[start:start + SETTLE_CHUNK])
        results = yield from script(cfg._wire_impl, scripts.LEASE_ACK, _fixed_keys(cfg) + [cfg._batch_prefix + token],
                                    [token, "each", len(part), len(part)] + part, ONCE)
        done += sum(int(x) for x in results)
    return done


def release_many(cfg: SetConfig, leases: Sequence[Any]) -> Plan[int]:
    """Put back leased items never handed to user code, uncharged.

    They return at their original score and their delivery count is as
    before the take, so they are never dead-lettered for it.
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.release_many(cfg, leases))
    groups = _by_token(leases)
    released = yield from _release(cfg, [(t, [x.member for x in g]) for t, g in groups.items()])
    for lease in leases:
        lease.settled = True
    if released:
        yield from wake(cfg, released)
    return released


def _release(cfg: SetConfig, groups: List[Tuple[str, List[bytes]]]) -> Plan[int]:
    released = 0
    for part in _chunks(groups, 2):
        keys = _fixed_keys(cfg) + [cfg._batch_prefix + t for t, _ in part]
        args: List[Any] = []
        for token, members in part:
            args.extend((token, len(members)))
            args.extend(members)
        released += int((yield from script(cfg._wire_impl, scripts.LEASE_RELEASE, keys, args, ONCE)))
    return released


def extend_many(cfg: SetConfig, leases: Sequence[Any], seconds: float) -> Plan[List[Any]]:
    """Renew leases to expire ``seconds`` from now; return the stale handles.

    The leases of a batch renewed together, all that it still holds, move
    its deadline. Others move to a batch of their own under a new token,
    which their handles take on. Safe to re-send: a repeat of an applied
    renewal finds the moved items under their new token.
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.extend_many(cfg, leases, seconds))
    deadline = time.time() + seconds
    stale: List[Any] = []
    for part in _chunks(list(_by_token(leases).items()), 3):
        renamed = [new_token() for _ in part]
        keys = (_fixed_keys(cfg) + [cfg._batch_prefix + t for t, _ in part]
                + [cfg._batch_prefix + t for t in renamed])
        args: List[Any] = [repr(float(deadline))]
        for (token, group), new in zip(part, renamed):
            args.extend((token, new, len(group)))
            args.extend(x.member for x in group)
        results = yield from script(cfg._wire_impl, scripts.LEASE_EXTEND, keys, args, SAFE)
        i = 0
        for (token, group), new in zip(part, renamed):
            moved = [x for x, r in zip(group, results[i:i + len(group)]) if int(r) == 2]
            for lease, r in zip(group, results[i:i + len(group)]):
                r = int(r)
                if r == 0:
                    stale.append(lease)
                    continue
                lease.deadline = deadline
                if r == 2:
                    lease.token = new
                    lease._n = len(moved)
            i += len(group)
    return stale


def extend(cfg: SetConfig, lease: Any, seconds: float) -> Plan[float]:
    """Renew one lease to expire ``seconds`` from now; return the new deadline.

    :raises StaleLeaseError: the lease is no longer held with this token.
    """
    stale = yield from extend_many(cfg, [lease], seconds)
    if stale:
        raise _stale("extend", lease, cfg)
    return float(lease.deadline)


def _stale(op: str, lease: Any, cfg: SetConfig) -> StaleLeaseError:
    return StaleLeaseError(
        "%s of %r on %r rejected: this lease (token %s) is no longer held; it expired "
        "and was reclaimed, possibly by another consumer, or was already settled"
        % (op, lease.item, cfg.name, lease.token), cfg.name, lease.token,
    )


def ack(cfg: SetConfig, lease: Any) -> Plan[None]:
    """Ack one lease.

    :raises StaleLeaseError: the lease is no longer held with this token.
    """
    _acked, stale = yield from ack_many(cfg, [lease])
    if stale:
        raise _stale("ack", lease, cfg)


def nack(cfg: SetConfig, lease: Any, score: Optional[float], delay: Optional[float]) -> Plan[bool]:
    """Put a leased item back; False if it went to the dead letters instead.

    ``score``: requeue at that score. ``delay`` on a ScheduledSet: due
    ``delay`` seconds from now (its score is its due time). ``delay`` on a
    SortedSet/TimeSortedSet: held back ``delay`` seconds, then back at its
    original score (its priority is kept). Neither: at once, original score.
    Not re-sent after a lost connection (:class:`OutcomeUnknown`).

    :raises StaleLeaseError: the lease is no longer held with this token.
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
    held = new_token() + ".held"
    main, inflight, leased, deliveries, dead = cfg._lease_keys
    keys = (main, inflight, leased, deliveries, dead, cfg._index_key, cfg._batch_prefix + lease.token,
            cfg._batch_prefix + held)
    result = int((yield from script(wire, scripts.LEASE_NACK, keys,
                                    (lease.member, lease.token, op, arg, cfg.max_deliveries or 0, held), ONCE)))
    if result == 0:
        raise _stale("hold" if op == "hold" else "nack", lease, cfg)
    if result == 1 and op == "nack":
        yield from wake(cfg, 1)
    return result == 1


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
