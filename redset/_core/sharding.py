"""Sharded sets: one logical set spread over K sets with different hash tags.

A set made with ``shards=K`` (K > 1) owns K ordinary sets, its *shards*,
named by :func:`shard_names`; on a cluster their hash tags put them in slots
spread over the nodes. A member always goes to the shard
``crc32(encoded member) % K``, so deduplication holds across the whole set.

The plans here are the sharded twins of the set's plans: the plan functions
of :mod:`reads`, :mod:`adds`, :mod:`pops` and :mod:`leasing` hand over to
them when the set is sharded. They never talk to a server themselves: they
yield :class:`~redset._core.steps.Fan` requests, which the sharded set's
driver (:mod:`redset._io.shards`) answers by running ordinary plans on the
shards' own drivers at the same time (threads in the sync facade, tasks in
the asyncio one). So both facades share every decision made here.

Ordering (see docs/cluster.md, "Sharded sets"): each shard hands out its
items lowest score first. ``take(n)`` with ``n >= K`` asks every shard for an
equal share (the remainder rotating) and then asks the shards that had more
for what is missing; ``take(n)`` with ``n < K`` first reads every shard's
lowest score and pops from the ``n`` shards with the lowest. Either way the
lowest item of the whole set is in the next take, and a take is returned
sorted by score.
"""
from __future__ import annotations

import time
import zlib
from operator import itemgetter
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from redset import scripts
from redset._core import adds, kinds, leasing, pops, reads
from redset._core.calls import pop, put_back
from redset._core.config import MAX_SHARDS, check_shards, shard_index, shard_names
from redset._core.failures import handle_failures
from redset._core.steps import Cancelled, Deliver, Fan, Plan, StopDelivery
from redset.exceptions import AddOutcome, with_outcome

__all__ = ["MAX_SHARDS", "WAIT_SLICE", "shard_names", "shard_index", "check_shards", "on_shard"]

#: Seconds a blocked take on a sharded set waits on one shard before it
#: looks at all of them again: an item added to another shard is seen
#: within about this long (plus a server tick).
WAIT_SLICE = 0.1


def _subs(cfg: Any) -> List[Any]:
    return cfg._shard_sets  # type: ignore[no-any-return]


def on_shard(shard: Any, plan: Plan[Any]) -> Plan[Any]:
    """Run one ordinary plan on one shard's driver; return its result."""
    results = yield Fan([(shard, plan)])
    return results[0].get()


def _all(cfg: Any, make: Any) -> Plan[List[Any]]:
    """Run ``make(shard)`` on every shard at once; the results, or the first error."""
    results = yield Fan([(sub, make(sub)) for sub in _subs(cfg)])
    return [r.get() for r in results]


def shard_of(cfg: Any, item: Any) -> Any:
    """The shard that holds (or would hold) ``item``."""
    subs = _subs(cfg)
    return subs[shard_index(cfg._dump(item), len(subs))]


# -- reads ------------------------------------------------------------------------------
def count(cfg: Any) -> Plan[int]:
    return sum((yield from _all(cfg, reads.count)))


def available(cfg: Any) -> Plan[int]:
    return sum((yield from _all(cfg, reads.available)))


def in_flight(cfg: Any) -> Plan[int]:
    return sum((yield from _all(cfg, reads.in_flight)))


def dead_count(cfg: Any) -> Plan[int]:
    return sum((yield from _all(cfg, reads.dead_count)))


def clear(cfg: Any, keep_dead_letters: bool) -> Plan[int]:
    return sum((yield from _all(cfg, lambda sub: reads.clear(sub, keep_dead_letters))))


def stats(cfg: Any) -> Plan[Any]:
    from redset.stats import combine

    return combine(cfg.name, (yield from _all(cfg, reads.stats)))


def in_flight_items(cfg: Any, num: int) -> Plan[List[Any]]:
    per_shard = yield from _all(cfg, lambda sub: reads.in_flight_items(sub, num))
    merged = [x for items in per_shard for x in items]
    merged.sort(key=lambda x: x.deadline)
    return merged[:num]


def score(cfg: Any, item: Any) -> Plan[Optional[float]]:
    sub = shard_of(cfg, item)
    return (yield from on_shard(sub, reads.score(sub, item)))  # type: ignore[no-any-return]


def discard(cfg: Any, item: Any) -> Plan[bool]:
    sub = shard_of(cfg, item)
    return bool((yield from on_shard(sub, reads.discard(sub, item))))


def _heads(cfg: Any, n: int, expired_first: bool = False) -> Plan[List[Tuple[float, int, bytes]]]:
    """The ``n`` lowest (score, shard, member) of every shard, merged by score.

    ``expired_first``: a shard holding an expired lease comes first (score
    -inf): a leased take there reclaims it, which no other take would do.
    """
    if expired_first:
        per_shard = yield from _all(cfg, lambda sub: reads.head_pairs(sub, n, True))
    else:
        per_shard = yield from _all(cfg, lambda sub: reads.head_pairs(sub, n))
    merged = [(s, i, m) for i, pairs in enumerate(per_shard) for m, s in pairs]
    merged.sort(key=lambda x: (x[0], x[1]))
    return merged


def peek(cfg: Any, position: int) -> Plan[Any]:
    if position < 0:
        raise KeyError("%s: a sharded set has no position %d (count from the head)" % (cfg.name, position))
    heads = yield from _heads(cfg, position + 1)
    if len(heads) <= position:
        raise KeyError("%s has no item at position %d" % (cfg.name, position))
    return cfg._load(heads[position][2])


def peek_score(cfg: Any) -> Plan[Optional[float]]:
    heads = yield from _heads(cfg, 1)
    return heads[0][0] if heads else None


# -- adds -------------------------------------------------------------------------------
def add(cfg: Any, item: Any, score_: Any, flags: Tuple[bytes, ...]) -> Plan[Any]:
    if score_ is None:
        score_ = cfg.scorer(item)
    sub = shard_of(cfg, item)
    return (yield from on_shard(sub, adds.add(sub, item, score_, flags)))


def add_many(cfg: Any, items: Iterable[Any], scores: Optional[Iterable[Any]],
             flags: Tuple[bytes, ...], start: int = 0) -> Plan[int]:
    """Encode and split the input by shard, then add each shard's part on its
    own connection, all shards at once, a round of ``chunk_size * K *
    ADD_WINDOW / 2`` input items at a time (memory stays bounded).

    Every item and score is checked while splitting, so bad input raises
    before anything of its round is sent. The adds go through shard sets
    with the default codec (the members are already encoded), so nothing is
    encoded twice. On an error the exception carries an :class:`AddOutcome`
    in input indices, as for an ordinary set; items of the failing round that
    their shard never sent are in its ``not_sent`` ranges.
    """
    raws = cfg._raw_sets
    k = len(raws)
    wire = cfg._wire_impl
    codec, dumps = cfg._codec, cfg._dumps
    encode, check_score = wire.encode_member, wire.format_score
    crc32 = zlib.crc32
    round_size = max(1, cfg.chunk_size * k * max(1, adds.ADD_WINDOW // 2))
    outcome = AddOutcome()
    added = 0
    added_per_shard = [0] * k
    outcome.consumed = stored_to = start  # every item from start to stored_to is stored
    chunks = iter(cfg._chunks(items, scores, start))
    done = False
    while not done:
        members: List[List[bytes]] = [[] for _ in range(k)]
        shard_scores: List[List[Any]] = [[] for _ in range(k)]
        where: List[List[int]] = [[] for _ in range(k)]
        size = 0
        try:
            while size < round_size:
                chunk = next(chunks, None)
                if chunk is None:
                    done = True
                    break
                chunk_items, chunk_scores, offset = chunk
                outcome.consumed = offset + len(chunk_items)
                for j, item in enumerate(chunk_items):
                    index = offset + j
                    member = encode(codec, dumps, item, index, stored_to - start)
                    sc = chunk_scores[j]
                    check_score(sc, index, stored_to - start)
                    i = crc32(member) % k
                    members[i].append(member)
                    shard_scores[i].append(sc)
                    where[i].append(index)
                size += len(chunk_items)
        except Exception as exc:  # bad input: nothing of this round was sent
            AddOutcome._append(outcome.stored, start, stored_to)
            outcome.added = added
            outcome.not_sent_from = stored_to
            raise with_outcome(exc, outcome) from None
        used = [i for i in range(k) if members[i]]
        if not used:
            continue
        results = yield Fan([(raws[i], adds.add_many(raws[i], members[i], shard_scores[i], flags, wake_up=False))
                             for i in used])
        failed: Optional[BaseException] = None
        for i, res in zip(used, results):
            if res.error is None:
                added += int(res.value)
                added_per_shard[i] += int(res.value)
            else:
                failed = failed or res.error
        if failed is not None:
            round_outcome = AddOutcome()
            for i, res in zip(used, results):
                if res.error is None:
                    round_outcome.stored.extend((x, x + 1) for x in where[i])
                else:
                    _map_outcome(round_outcome, getattr(res.error, "outcome", None), where[i])
            outcome.stored = [(start, stored_to)] if stored_to > start else []
            outcome.added = added + round_outcome.added
            for name in ("stored", "refused", "unknown", "not_sent"):
                ranges = getattr(outcome, name)
                for first, stop in _merged(getattr(round_outcome, name)):
                    AddOutcome._append(ranges, first, stop)
            outcome.not_sent_from = outcome.consumed
            base = failed.__cause__ if getattr(failed, "outcome", None) is not None and \
                failed.__cause__ is not None else failed
            yield from _wake(cfg, added_per_shard, flags)
            raise with_outcome(base, outcome) from None
        stored_to = outcome.consumed
    yield from _wake(cfg, added_per_shard, flags)
    return added


def _wake(cfg: Any, added_per_shard: List[int], flags: Tuple[bytes, ...]) -> Plan[None]:
    """Wake the consumers waiting on shards that got new (or moved) items."""
    raws = cfg._raw_sets
    todo = [i for i, n in enumerate(added_per_shard) if n or flags != (b"NX",)]
    if todo:
        yield Fan([(raws[i], adds.wake(raws[i], added_per_shard[i] or 1)) for i in todo])


def _map_outcome(into: AddOutcome, shard_outcome: Optional[AddOutcome], where: List[int]) -> None:
    """Add a shard's outcome (indices into its part) to ``into`` (input indices)."""
    if shard_outcome is None:  # nothing known: all of it may or may not be stored
        for index in where:
            into.unknown.append((index, index + 1))
        return
    into.added += shard_outcome.added
    for name in ("stored", "refused", "unknown"):
        for start, stop in getattr(shard_outcome, name):
            getattr(into, name).extend((where[x], where[x] + 1) for x in range(start, min(stop, len(where))))
    first_unsent = shard_outcome.not_sent_from
    if first_unsent is not None:
        into.not_sent.extend((where[x], where[x] + 1) for x in range(first_unsent, len(where)))


def _merged(ranges: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


# -- takes ------------------------------------------------------------------------------
def _pop_scored(sub: Any, num: int, lease: Optional[float]) -> Plan[Tuple[List[Tuple[float, Any, Any]], int]]:
    """Pop (or lease) up to ``num`` items of one shard without waiting.

    Returns ``(entries, failed)``: ``(score, item or Lease, raw member)`` in
    pop order, and how many popped members failed to load.
    """
    if lease is not None:
        leases, skipped = yield from leasing.lease_take(sub, num, lease, sub._make_lease)
        return [(x.score, x, x.member) for x in leases], skipped
    wire = sub._wire_impl
    pairs, _ = yield from pop(wire, pops.pop_request(sub, num), sub._codec, sub._loads,
                              scripts.POP_DUE if sub._due_only else None, scored=True)
    if not pairs:
        return [], 0
    failures: List[Tuple[bytes, BaseException]] = []
    decoded = wire.decode_items([m for m, _ in pairs], sub._codec, sub._loads, failures, False)
    if not failures:
        return [(s, item, m) for (m, s), item in zip(pairs, decoded)], 0
    failures = []
    entries = []
    for m, s in pairs:  # some failed: find which, one by one
        try:
            entries.append((s, wire.decode_member(sub._codec, sub._loads, m), m))
        except (RuntimeError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the decode-error policy decides
            failures.append((m, exc))
    yield from handle_failures(sub, [e[1] for e in entries], failures)
    return entries, len(failures)


_by_score = itemgetter(0)


def _restore(cfg: Any, got: Dict[int, List[Tuple[float, Any, Any]]], lease: Optional[float]) -> Plan[None]:
    """Put back what a take popped but will not deliver (all shards at once)."""
    subs = _subs(cfg)
    jobs: List[Tuple[Any, Plan[Any]]] = []
    for i, entries in got.items():
        if not entries:
            continue
        sub = subs[i]
        if lease is not None:
            jobs.append((sub, leasing.release_many(sub, [e[1] for e in entries])))
        else:
            jobs.append((sub, put_back(sub._wire_impl, sub._key, [(e[2], e[0]) for e in entries])))
    if jobs:
        results = yield Fan(jobs)
        for r in results:
            r.get()


def take_round(cfg: Any, num: int, lease: Optional[float]) -> Plan[List[Any]]:
    """Pop (or lease) up to ``num`` items over all shards, without waiting;
    return them sorted by score.

    If a shard fails, what the other shards popped is put back (leases
    released) before its error is raised, so the error means what it means
    for an ordinary set; if putting back fails too, the items are on the
    error's ``taken`` attribute.
    """
    subs = _subs(cfg)
    k = len(subs)
    targets: Dict[int, int]
    if num < k:
        heads = yield from _heads(cfg, 1, lease is not None)
        targets = {}
        for _, i, _ in heads:
            if len(targets) == num:
                break
            targets[i] = 1
    else:
        base, extra = divmod(num, k)
        start = cfg._shard_turn % k
        cfg._shard_turn = start + 1
        targets = {i: base + (1 if (i - start) % k < extra else 0) for i in range(k)}
    got: Dict[int, List[Tuple[float, Any, Any]]] = {}
    total = 0
    live = list(range(k))  # shards not seen short of items yet
    while targets:
        order = list(targets.items())
        try:
            results = yield Fan([(subs[i], _pop_scored(subs[i], q, lease)) for i, q in order])
        except Cancelled as cancelled:
            for (i, _), res in zip(order, getattr(cancelled, "results", ())):
                if res.error is None:
                    got.setdefault(i, []).extend(res.value[0])
            yield from _restore(cfg, got, lease)
            raise
        error: Optional[BaseException] = None
        for (i, q), res in zip(order, results):
            if res.error is not None:
                error = error or res.error
                continue
            entries, failed = res.value
            got.setdefault(i, []).extend(entries)
            total += len(entries)
            if len(entries) + failed < q:
                live.remove(i)  # it gave what it had
        if error is not None:
            yield from _give_back(cfg, got, lease, error)
            raise error
        missing = num - total
        if missing <= 0 or not live:
            break
        # Ask the shards that may have more for what is missing.
        base, extra = divmod(missing, len(live))
        targets = {i: base + (1 if n < extra else 0) for n, i in enumerate(live) if base or n < extra}
    if len(got) == 1:  # one shard: already in order
        return [e[1] for entries in got.values() for e in entries]
    merged = [e for entries in got.values() for e in entries]
    merged.sort(key=_by_score)  # runs already sorted: a merge, in C
    return [e[1] for e in merged]


def _give_back(cfg: Any, got: Dict[int, List[Tuple[float, Any, Any]]], lease: Optional[float],
               error: BaseException) -> Plan[None]:
    try:
        yield from _restore(cfg, got, lease)
    except kinds.RESPONSE + kinds.NETWORK:
        error.taken = [e[1] for entries in got.values() for e in entries]  # type: ignore[attr-defined]


def take(cfg: Any, num: int, timeout: Optional[float], lease: Optional[float],
         read_timeout: Optional[float]) -> Plan[List[Any]]:
    """``take`` on a sharded set: a round over every shard; when it finds
    nothing and ``timeout`` allows, wait on one shard (in turn) for at most
    :data:`WAIT_SLICE` and look at all of them again."""
    deadline = None if timeout is None else time.monotonic() + timeout
    subs = _subs(cfg)
    while True:
        items = yield from take_round(cfg, num, lease)
        if items or deadline is None:
            return items
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return items
        turn = cfg._shard_turn % len(subs)
        cfg._shard_turn = turn + 1
        sub = subs[turn]
        items = yield from on_shard(sub, pops.take(sub, num, min(remaining, WAIT_SLICE), lease, read_timeout,
                                                   sub._make_lease))
        if items:
            return list(items)


def drain(cfg: Any, batch_size: int) -> Plan[None]:
    """Deliver batches until every shard is empty: one round per batch, no pop
    left in flight (stopping early loses and puts back nothing)."""
    while True:
        items = yield from take_round(cfg, batch_size, None)
        if not items:
            return
        try:
            yield Deliver(items)
        except StopDelivery:
            return


# -- leases -----------------------------------------------------------------------------
def _by_shard(leases: Sequence[Any]) -> Dict[int, Tuple[Any, List[Any]]]:
    groups: Dict[int, Tuple[Any, List[Any]]] = {}
    for lease in leases:
        groups.setdefault(id(lease._set), (lease._set, []))[1].append(lease)
    return groups


def ack_many(cfg: Any, leases: Sequence[Any]) -> Plan[Tuple[int, List[Any]]]:
    groups = list(_by_shard(leases).values())
    results = yield Fan([(sub, leasing.ack_many(sub, group)) for sub, group in groups])
    acked = 0
    stale: List[Any] = []
    error: Optional[BaseException] = None
    for res in results:
        if res.error is not None:
            error = error or res.error
            continue
        acked += res.value[0]
        stale.extend(res.value[1])
    if error is not None:
        raise error
    return acked, stale


def extend_many(cfg: Any, leases: Sequence[Any], seconds: float) -> Plan[List[Any]]:
    groups = list(_by_shard(leases).values())
    results = yield Fan([(sub, leasing.extend_many(sub, group, seconds)) for sub, group in groups])
    stale: List[Any] = []
    for res in results:
        stale.extend(res.get())
    return stale


def release_many(cfg: Any, leases: Sequence[Any]) -> Plan[int]:
    groups = list(_by_shard(leases).values())
    results = yield Fan([(sub, leasing.release_many(sub, group)) for sub, group in groups])
    return sum(r.get() for r in results)


def dead_letters(cfg: Any, num: int) -> Plan[List[Any]]:
    per_shard = yield from _all(cfg, lambda sub: leasing.dead_letters(sub, num))
    return [x for items in per_shard for x in items][:num]


def requeue_dead(cfg: Any, num: int) -> Plan[int]:
    moved = 0
    for sub in _subs(cfg):
        if moved >= num:
            break
        moved += int((yield from on_shard(sub, leasing.requeue_dead(sub, num - moved))))
    return moved

