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

import operator
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from redset import scripts
from redset._core import kinds
from redset._core.adds import wake
from redset._core.calls import call, follow, is_noscript, lost, script
from redset._core.config import SetConfig, new_token
from redset._core.handles import LeaseBatch
from redset._core.errors import named_error
from redset._core.failures import handle_failures
from redset._core.steps import (
    LEASES, ONCE, POPS, RECV_PAIRS, SAFE, Recv, Cancelled, Cmd, NotSent, Plan, Redirected, Send,
)
from redset.exceptions import StaleLeaseError

__all__ = ["lease_take", "unsettled", "nack", "extend", "extend_many", "ack_many", "release_many", "dead_letters",
           "requeue_dead", "ack_members"]

#: The class of the lease handles a take makes (a LeaseBase).
LeaseFactory = Any

#: Members per script call of the settles (Lua's stack holds ~8,000 values).
SETTLE_CHUNK = 1000

_STAGE_SHA = scripts.sha1(scripts.LEASE_STAGE)
_BATCH_OF = operator.attrgetter("_batch")
_SETTLED = operator.attrgetter("_settled")


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
        stage = ("EVALSHA", _STAGE_SHA, 6, main, inflight, leased, cfg._index_key, batch, deliveries,
                 wire.format_score(now), num, repr(float(deadline)), token,
                 "1" if cfg._due_only else "0", "1" if cfg.leased else "0")
        head, leases = yield from _staged(cfg, (stage, ("ZRANGE", batch, 0, -1, "WITHSCORES")), token, deadline,
                                          make)
        if isinstance(head, kinds.RESPONSE):
            if is_noscript(head):
                yield from call(wire, ("SCRIPT", "LOAD", scripts.LEASE_STAGE))
                continue
            raise named_error(head, stage, "LEASE_STAGE")
        if head[0][0] == b"expired":  # expired leases first
            yield from _reclaim(cfg, [t.decode() for t, _ in head[1:]])
            continue
        break
    out, failures = leases
    if failures:
        # Keep nothing in flight that no one can ack; the batch is no longer whole.
        if out:
            out[0]._batch.n = 0
        yield from ack_members(cfg, token, [m for m, _ in failures])
        yield from handle_failures(cfg, out, failures)
    return out, len(failures)


def _staged(cfg: SetConfig, commands: Sequence[Sequence[Any]], token: str, deadline: float,
            make: Any) -> Plan[List[Any]]:
    """Send the staging script and the read of its batch; return the
    script's reply as ``(member, score)`` pairs, and ``(handles, failures)``
    of the batch (both are read from the socket by the codec's pop parser,
    as a ZPOPMIN reply is).

    Nothing is re-sent once the script may have run: a lost connection
    raises :class:`PopOutcomeUnknown` (the items, if staged, come back when
    the lease expires). A cancelled caller gets the items staged for it put
    back before :class:`Cancelled` goes on.
    """
    wire = cfg._wire_impl
    cmds = [Cmd(wire.pack_command(args), args) for args in commands]
    # On a cluster the read waits for the script's reply: sent together, a
    # node mid-migration may refuse the script (-TRYAGAIN) and run the read,
    # an outcome the driver can only report as unknown.
    split = cfg._one_command_at_a_time
    replies: List[Any] = []
    redirects = 0
    expected = 0
    while True:
        try:
            pending = cmds[len(replies):len(replies) + 1] if split else cmds[len(replies):]
            yield Send(pending)
            expected = len(replies) + len(pending)
            if not replies:
                replies.append((yield RECV_PAIRS))
                head = replies[0]
                if isinstance(head, kinds.RESPONSE) or head[0][0] != b"staged":
                    if not split:
                        replies.append((yield RECV_PAIRS))  # an empty batch: nothing was staged
                    return [head, ([], [])]
                if split:
                    continue  # now the read of the batch
            head = replies[0]
            before = {m: int(d) + 1 for m, d in head[1:]} if len(head) > 1 else None
            batch = LeaseBatch(cfg, token, deadline, int(head[0][1]))
            if before:
                batch.again = list(before)  # their deliveries entries go when the batch is acked whole
            got = yield Recv(LEASES, cfg._codec, cfg._loads, leases=(make, batch, before))
            if isinstance(got, kinds.RESPONSE):
                raise named_error(got, commands[1], "LEASE_STAGE")
            return [head, got]
        except Redirected as exc:  # the commands without a reply did not run
            redirects = yield from follow(exc, redirects, commands[len(replies)], "LEASE_STAGE")
        except NotSent as exc:
            raise exc.error
        except kinds.NETWORK as exc:
            raise lost(POPS, commands[0], exc, "the items (if staged, they come back when the lease expires)",
                       "LEASE_STAGE") from exc
        except Cancelled:
            try:
                while len(replies) < expected:
                    replies.append((yield RECV_PAIRS))
            except Redirected:
                raise Cancelled() from None
            staged = (replies and isinstance(replies[0], list) and replies[0]
                      and replies[0][0][0] == b"staged" and int(replies[0][0][1]))
            if staged:
                if len(replies) > 1 and isinstance(replies[1], list):
                    members = [m for m, _ in replies[1]]
                else:  # staged, not read yet
                    members = list((yield from call(wire, ("ZRANGE", cfg._batch_prefix + token, 0, -1))))
                if members:
                    yield from _release(cfg, [(token, members)])
            raise


def _reclaim(cfg: SetConfig, tokens: List[str]) -> Plan[int]:
    """Reclaim the expired batches of ``tokens`` (their keys declared)."""
    main, inflight, leased, deliveries, dead = cfg._lease_keys
    keys = [main, inflight, leased, deliveries, dead, cfg._index_key] + [cfg._batch_prefix + t for t in tokens]
    args = [cfg._wire_impl.format_score(time.time()), cfg.max_deliveries or 0] + tokens
    return int((yield from script(cfg._wire_impl, scripts.LEASE_RECLAIM, keys, args)))


def _by_batch(leases: Sequence[Any]) -> List[Tuple[Any, List[Any]]]:
    """Leases grouped by their batch object, each member once, in order."""
    groups: Dict[int, Tuple[Any, List[Any]]] = {}
    seen = set()
    for lease in leases:
        key = (lease._batch.token, lease.member)
        if key in seen:
            continue
        seen.add(key)
        b = lease._batch
        groups.setdefault(id(b), (b, []))[1].append(lease)
    return list(groups.values())


def _whole(cfg: SetConfig, leases: Sequence[Any]) -> Any:
    """The batch that ``leases`` are all of, each once, none settled on its
    own, or None."""
    if not leases:
        return None
    b = leases[0]._batch
    if not b.n or b.done or len(leases) != b.n or type(leases) is not list:
        return None
    return b if cfg._wire_impl.whole_batch(leases, b) else None


def _chunks(groups: List[Tuple[Any, List[Any]]], fixed: int) -> List[List[Tuple[Any, List[Any]]]]:
    """Groups packed into calls of about :data:`SETTLE_CHUNK` members; a
    group larger than that is split."""
    calls: List[List[Tuple[Any, List[Any]]]] = [[]]
    size = 0
    for key, members in groups:
        for start in range(0, max(1, len(members)), SETTLE_CHUNK):
            part = members[start:start + SETTLE_CHUNK]
            if size and size + len(part) + fixed > SETTLE_CHUNK:
                calls.append([])
                size = 0
            calls[-1].append((key, part))
            size += len(part) + fixed
    return [c for c in calls if c]


def unsettled(cfg: SetConfig, leases: Iterable[Any]) -> List[Any]:
    """The handles of ``leases`` not settled yet (for ``ack_many``).

    :raises ValueError: a lease of another set.
    """
    todo = leases if type(leases) is list else list(leases)
    if todo:  # the common case first: every handle of one take
        b = todo[0]._batch
        if b.n == len(todo) and not b.done and cfg._owns_owner(b.owner) and cfg._wire_impl.whole_batch(todo, b):
            return todo
    batches = set(map(_BATCH_OF, todo))
    for b in batches:
        if not cfg._owns_owner(b.owner):
            raise ValueError("lease of %r given to ack_many of %r" % (b.owner.name, cfg.name))
    if any(b.done for b in batches) or any(map(_SETTLED, todo)):
        todo = [x for x in todo if not x.settled]
    return todo


def ack_many(cfg: SetConfig, leases: Sequence[Any]) -> Plan[Tuple[int, List[Any]]]:
    """Ack leases, a whole batch in one ``DEL``; return (acked, stale handles).

    Handles are marked ``settled`` as their acks are confirmed (a batch
    acked whole is marked once, on its :class:`LeaseBatch`). Never re-sent
    after a lost connection (:class:`OutcomeUnknown`).
    """
    if cfg._shard_sets is not None:
        return (yield from sharding.ack_many(cfg, leases))
    b = _whole(cfg, leases)
    if b is not None:
        whole = [(b, list(leases))]
        each: List[Tuple[Any, List[Any]]] = []
    else:
        whole, each = [], []
        for b, group in _by_batch(leases):
            (whole if b.n and len(group) == b.n else each).append((b, group))
    acked = 0
    stale: List[Any] = []
    if whole:
        keys = _fixed_keys(cfg) + [cfg._batch_prefix + b.token for b, _ in whole]
        results = yield from script(cfg._wire_impl, scripts.LEASE_ACK, keys, _all_args(whole), ONCE)
        for (b, group), ok in zip(whole, results):
            if int(ok):
                b.done = True
                acked += len(group)
            else:
                each.append((b, group))
    for part in _chunks(each, 4):
        keys = _fixed_keys(cfg) + [cfg._batch_prefix + b.token for b, _ in part]
        args: List[Any] = []
        for b, group in part:
            args.extend((b.token, "each", len(group), len(group)))
            args.extend(x.member for x in group)
        results = yield from script(cfg._wire_impl, scripts.LEASE_ACK, keys, args, ONCE)
        flat = [x for _, group in part for x in group]
        for lease, ok in zip(flat, results):
            if int(ok):
                lease._settled = True
                acked += 1
            else:
                stale.append(lease)
    return acked, stale


def _all_args(whole: List[Tuple[Any, List[Any]]]) -> List[Any]:
    """ARGV of LEASE_ACK for batches acked whole: token, "all", the batch
    size, how many members follow, then the members whose deliveries entry
    must go (those delivered before)."""
    args: List[Any] = []
    for b, group in whole:
        args.extend((b.token, "all", len(group), len(b.again)))
        args.extend(b.again)
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
    released = yield from _release(cfg, [(b.token, [x.member for x in g]) for b, g in _by_batch(leases)])
    for lease in leases:
        lease._settled = True
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
    for part in _chunks(_by_batch(leases), 3):
        renamed = [new_token() for _ in part]
        keys = (_fixed_keys(cfg) + [cfg._batch_prefix + b.token for b, _ in part]
                + [cfg._batch_prefix + t for t in renamed])
        args: List[Any] = [repr(float(deadline))]
        for (b, group), new in zip(part, renamed):
            args.extend((b.token, new, len(group)))
            args.extend(x.member for x in group)
        results = [int(r) for r in (yield from script(cfg._wire_impl, scripts.LEASE_EXTEND, keys, args, SAFE))]
        i = 0
        for (b, group), new in zip(part, renamed):
            mine = results[i:i + len(group)]
            i += len(group)
            moved = [x for x, r in zip(group, mine) if r == 2]
            stale.extend(x for x, r in zip(group, mine) if r == 0)
            if any(r == 1 for r in mine):
                b.deadline = deadline  # the whole batch moved its deadline
            if moved:
                nb = LeaseBatch(b.owner, new, deadline, len(moved))
                for lease in moved:
                    lease._batch = nb
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
