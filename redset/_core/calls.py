"""Plans for one round trip and its policy: what is re-sent, what is unknown.

Every command redset sends goes through one of these, so the rules live
once: commands that are safe to repeat are re-sent after a lost connection
(twice, with a short backoff) and wait out a server that is loading its
dataset; a pop is never re-sent (:class:`PopOutcomeUnknown`) and neither is a
lease settle (:class:`OutcomeUnknown`); a script the server lacks is loaded
and called again (NOSCRIPT means it did not run).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple


from redset import scripts
from redset._codec import Codec
from redset._core import kinds
from redset._core.steps import (
    MAX_REDIRECTS, ONCE, POP, POPS, RECV_PAIRS, RECV_RAW, SAFE, Cancelled, Cmd, NotSent, Plan, Recv,
    Redirected, Send, Sleep,
)
from redset._core.errors import name_of, named_error
from redset.exceptions import OutcomeUnknown, PopOutcomeUnknown

__all__ = ["call", "call_many", "script", "pop", "retry_delay", "lost", "is_noscript", "follow"]

# Re-sends of idempotent commands after a connection error, with backoff.
SAFE_RETRIES = 2
RETRY_BACKOFF = 0.05
# A server loading its dataset (after a restart) answers -LOADING: safe
# commands wait for it, polling, up to LOADING_RETRIES * LOADING_POLL s.
LOADING_RETRIES = 100
LOADING_POLL = 0.1
# How often a script call reloads the script after NOSCRIPT.
NOSCRIPT_RELOADS = 3


def retry_delay(attempt: int, exc: BaseException) -> Optional[float]:
    """Seconds to wait before re-sending a command that is safe to repeat,
    or None to give up. ``attempt`` counts the re-sends so far."""
    if isinstance(exc, kinds.LOADING):
        return LOADING_POLL if attempt < LOADING_RETRIES else None
    if attempt >= SAFE_RETRIES:
        return None
    return RETRY_BACKOFF * (attempt + 1)


def is_noscript(exc: BaseException) -> bool:
    """True for the NOSCRIPT error (redis-py turns it into NoScriptError)."""
    return isinstance(exc, kinds.NOSCRIPT) or str(exc).startswith("NOSCRIPT")


def lost(kind: int, args: Sequence[Any], exc: BaseException, what: str = "the items",
         label: Optional[str] = None) -> BaseException:
    """The exception for a connection lost after a never-re-sent command was sent."""
    op, key = name_of(args, label)
    if kind == POPS:
        return PopOutcomeUnknown(
            "connection lost during %s on %r: the server may or may not have removed %s, "
            "which were not delivered; not retried" % (op, key, what), key)
    return OutcomeUnknown(
        "connection lost during %s on %r after it was sent: it may or may not have been "
        "applied; not retried" % (op, key), key)


def follow(exc: Redirected, redirects: int, args: Sequence[Any], label: Optional[str] = None) -> Plan[int]:
    """Count one more redirect of the commands in flight and return the new
    count; past :data:`MAX_REDIRECTS`, raise the node's reply, naming the key.
    The caller then re-sends every command it has no reply to: none of them
    ran. A node that asked to try again later (TRYAGAIN, CLUSTERDOWN) gets a
    pause that grows with the count, up to 10x ``exc.delay`` (about 6 s in all
    before giving up, at the default delay: a failover's usual window)."""
    if redirects >= MAX_REDIRECTS:
        raise named_error(exc.error, args, label) from None
    if exc.delay:
        yield Sleep(exc.delay * min(redirects + 1, 10))
    return redirects + 1


def call_many(wire: Codec, commands: Sequence[Sequence[Any]], kind: int = SAFE,
              label: Optional[str] = None,
              on_cancel: Optional[Callable[[List[Any]], Plan[None]]] = None) -> Plan[List[Any]]:
    """Send ``commands`` in one write and return their replies.

    The first error reply is raised once every reply was read (so the
    connection stays clean), as redis-py's class, naming the key.

    If the caller's task is cancelled after the commands were sent, their
    replies are still read (the connection must not keep them for someone
    else) and given to ``on_cancel`` (a plan that puts popped items back)
    before :class:`Cancelled` goes on.
    """
    cmds = [Cmd(wire.pack_command(args), args) for args in commands]
    first = commands[0]
    attempt = redirects = 0
    replies: List[Any] = []
    while True:
        sent = False
        try:
            yield Send(cmds[len(replies):])
            sent = True
            while len(replies) < len(cmds):
                replies.append((yield RECV_RAW))
        except Redirected as exc:  # the commands without a reply did not run
            redirects = yield from follow(exc, redirects, first, label)
            continue
        except NotSent as exc:
            if kind != SAFE:
                raise exc.error
            exc_now: BaseException = exc.error
        except kinds.NETWORK as exc:
            if kind != SAFE:
                raise lost(kind, first, exc, label=label) from exc
            exc_now = exc
        except Cancelled:
            if sent:
                try:
                    while len(replies) < len(cmds):
                        replies.append((yield RECV_RAW))
                except Redirected:  # refused by a cluster node: the rest did not run
                    pass
                else:
                    if on_cancel is not None:
                        yield from on_cancel(replies)
            raise
        else:
            for args, reply in zip(commands, replies):
                if isinstance(reply, kinds.RESPONSE):
                    raise named_error(reply, args, label)
            return replies
        delay = retry_delay(attempt, exc_now)
        if delay is None:
            raise exc_now
        attempt += 1
        replies = []
        yield Sleep(delay)


def call(wire: Codec, args: Sequence[Any], kind: int = SAFE, label: Optional[str] = None,
         on_cancel: Optional[Callable[[List[Any]], Plan[None]]] = None) -> Plan[Any]:
    """Send one command and return its reply (see :func:`call_many`)."""
    replies = yield from call_many(wire, (args,), kind, label, on_cancel)
    return replies[0]


def script(wire: Codec, source: str, keys: Sequence[Any], args: Sequence[Any],
           kind: int = SAFE) -> Plan[Any]:
    """Run a script by SHA, loading it first if the server lacks it.

    NOSCRIPT means the script did not run, so loading and calling again is
    safe whatever the kind. The cache can be lost again between the load and
    the call (a restart or failover while a retry is under way), so this is a
    bounded loop, not one reload.
    """
    cmd = ["EVALSHA", scripts.sha1(source), len(keys)] + list(keys) + list(args)
    label = scripts.name_of(source)
    for _ in range(NOSCRIPT_RELOADS):
        try:
            return (yield from call(wire, cmd, kind, label))
        except kinds.RESPONSE as exc:
            if not is_noscript(exc):
                raise
        yield from call(wire, ("SCRIPT", "LOAD", source))
    return (yield from call(wire, cmd, kind, label))


def pop_steps(wire: Codec, args: Sequence[Any], codec: int, loads: Any, scored: bool = False) -> Tuple[Send, Recv]:
    """The requests of :func:`pop`: the :class:`Send` of ``args``, and the
    :class:`Recv` of its reply. They hold no state, so a plan may keep them
    and give them to :func:`pop` again for the same pop."""
    return Send([Cmd(wire.pack_command(args), args)]), (RECV_PAIRS if scored else Recv(POP, codec, loads))


def pop(wire: Codec, args: Sequence[Any], codec: int, loads: Any,
        source: Optional[str] = None, scored: bool = False,
        steps: Optional[Tuple[Send, Recv]] = None) -> Plan[Tuple[List[Any], List[Tuple[bytes, BaseException]]]]:
    """Run one pop (ZPOPMIN, or the script ``source`` called by ``args``) and
    return ``(items, failures)``: the members decoded, and the raw bytes and
    error of each that failed to decode. With ``scored``, ``items`` are the
    raw ``(member, score)`` pairs, not decoded, and ``failures`` is empty.
    ``steps``: what :func:`pop_steps` made of the same arguments, if kept.

    :raises PopOutcomeUnknown: the connection failed after the pop was sent.
    """
    label = None if source is None else scripts.name_of(source)
    send, recv = steps if steps is not None else pop_steps(wire, args, codec, loads, scored)
    reloads = redirects = 0
    while True:
        sent = False
        try:
            yield send
            sent = True
            reply = yield recv
        except Redirected as exc:  # refused by the node: the pop did not run
            redirects = yield from follow(exc, redirects, args, label)
            continue
        except NotSent as exc:
            raise exc.error
        except kinds.NETWORK as exc:
            raise lost(POPS, args, exc, label=label) from exc
        except Cancelled:
            if sent:  # popped, never delivered: put the items back
                yield from put_back(wire, args[3] if source is not None else args[1], (yield from read_popped()))
            raise
        if not isinstance(reply, kinds.RESPONSE):
            if scored:
                return reply, []
            items, failures = reply
            return items, failures
        if source is None or not is_noscript(reply) or reloads == NOSCRIPT_RELOADS:
            raise named_error(reply, args, label)
        reloads += 1
        yield from call(wire, ("SCRIPT", "LOAD", source))


def read_popped() -> Plan[Any]:
    """The ``(member, score)`` pairs of a pop in flight that will not be
    delivered, or None if a cluster node refused it (it did not run)."""
    try:
        return (yield RECV_PAIRS)
    except Redirected:
        return None


def put_back(wire: Codec, key: Any, pairs: Any) -> Plan[None]:
    """``ZADD key NX`` the ``(member, score)`` pairs of a pop never delivered."""
    if pairs and not isinstance(pairs, kinds.RESPONSE):
        restore: List[Any] = ["ZADD", key, "NX"]
        for member, score in pairs:
            restore.extend((score, member))
        yield from call(wire, restore)


__all__ += ["SAFE", "ONCE", "POPS", "put_back", "read_popped", "pop_steps"]
