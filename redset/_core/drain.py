"""The drain plan: pop batches until the set is empty, a window of pops in flight."""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple


from redset._codec import Codec
from redset._core import kinds

from redset._core.calls import follow, lost, put_back
from redset._core.errors import named_error
from redset.exceptions import DeserializationError
from redset._core.steps import (
    POP, POPS, RECV_PAIRS, Cancelled, Cmd, Deliver, NotSent, Plan, Recv, Redirected, Send,
    StopDelivery,
)

__all__ = ["pop_batches", "DRAIN_WINDOW"]

Failures = List[Tuple[bytes, BaseException]]

#: How many pops ``drain`` keeps in flight besides the one whose reply is
#: being received: when a reply's header shows a full batch, further pops are
#: sent until this many wait behind it, so the server always has the next
#: one to work on while the client receives and decodes. It is also the
#: at-most-once exposure of a drain: a process that dies loses up to
#: ``DRAIN_WINDOW + 1`` batches (those in flight and the one being received),
#: popped but not handed over. 1 is a single pop ahead.
DRAIN_WINDOW = 3


def pop_batches(wire: Codec, make_request: Callable[[], Sequence[Any]], batch_size: int, codec: int,
                loads: Any, restore_key: bytes, on_failures: Callable[[List[Any], Failures], Plan[None]],
                label: Any = None, window: int = DRAIN_WINDOW) -> Plan[None]:
    """Deliver the items of each pop until a pop returns fewer than
    ``batch_size`` members.

    Members that fail to decode go to ``on_failures(items, failures)`` (a
    plan) first; a batch left empty by that is not delivered. As that plan
    talks on the same connection, the pops in flight are read first (kept
    undecoded, delivered after it).

    As soon as the header of a reply shows a full batch, pops are sent
    until ``window`` of them are in flight besides that reply, so the server
    works on the next ones while this one is received and decoded. Once a
    reply comes back short, nothing more is sent; the pops already in flight
    are still read and their items (added meanwhile) delivered. If the
    caller stops early (:class:`StopDelivery`), or a cancellation or a
    :class:`DeserializationError` ends the drain, every pop in flight is
    read and the members popped but not delivered are put back with
    ``ZADD NX`` at their scores on ``restore_key``.

    :raises PopOutcomeUnknown: the connection failed with pops in flight
        (the message says how many: up to ``window + 1``).
    """
    pending: Deque[Sequence[Any]] = deque()  # requests sent, no reply read, oldest first
    # Replies read undecoded (to free the connection for on_failures), not
    # yet handed over: (request, [(member, score), ...] or an error reply).
    stashed: Deque[Tuple[Sequence[Any], Any]] = deque()
    last: Sequence[Any] = ()  # the newest request, named if the connection is lost
    short = False  # a reply came back short: send no more pops
    redirects = 0

    def send(n: int) -> List[Cmd]:
        nonlocal last
        cmds = []
        for _ in range(n):
            args = last = make_request()
            pending.append(args)
            cmds.append(Cmd(wire.pack_command(args), args))
        return cmds

    def ahead(count: int) -> Optional[List[Cmd]]:
        # The server has made this reply (still in ``pending``): top the
        # pops in flight behind it back up to ``window`` now, so that it
        # works on them while this one is received and decoded.
        nonlocal short
        if count < batch_size:
            short = True
        if short:
            return None
        missing = window + 1 - len(pending)
        return send(missing) if missing > 0 else None

    def stash() -> Plan[None]:
        # Read every pop in flight, undecoded: the connection is then free.
        nonlocal redirects
        while pending:
            try:
                pairs = yield RECV_PAIRS
            except Redirected as exc:  # refused: none of those left ran
                try:
                    redirects = yield from follow(exc, redirects, last, label)
                except BaseException:
                    pending.clear()  # not in flight any more: nothing to read
                    raise
                yield Send([Cmd(wire.pack_command(args), args) for args in pending])
                continue
            stashed.append((pending.popleft(), pairs))

    def give_back() -> Plan[None]:
        # Popped, never delivered: read what is in flight, put it all back.
        while pending:
            try:
                pairs = yield RECV_PAIRS
            except Redirected:  # refused, so they did not run; the driver read them all
                pending.clear()
                break
            stashed.append((pending.popleft(), pairs))
        back = [pair for _, pairs in stashed if pairs and not isinstance(pairs, kinds.RESPONSE)
                for pair in pairs]
        yield from put_back(wire, restore_key, back)
        stashed.clear()

    try:
        yield Send(send(1))
        while True:
            if stashed:
                args, pairs = stashed.popleft()
                if isinstance(pairs, kinds.RESPONSE):
                    raise named_error(pairs, args, label)
                if len(pairs) < batch_size:
                    short = True
                failures: Failures = []
                items = wire.decode_items([member for member, _ in pairs], codec, loads, failures, False)
            elif pending:
                try:
                    reply = yield Recv(POP, codec, loads, ahead)
                except Redirected as exc:  # refused by a cluster node: no pop in flight ran
                    redirects = yield from follow(exc, redirects, last, label)
                    yield Send([Cmd(wire.pack_command(args), args) for args in pending])
                    continue
                except Cancelled:
                    yield from give_back()
                    raise
                args = pending.popleft()
                if isinstance(reply, kinds.RESPONSE):
                    # Pops sent after this one's header may be in flight:
                    # the driver closes the connection as the error leaves
                    # the plan.
                    raise named_error(reply, args, label)
                items, failures = reply
                if len(items) + len(failures) < batch_size:
                    short = True  # (ahead saw it too, if the driver asked)
            elif short:
                return
            else:  # the pops in flight were stashed, all full: start again
                yield Send(send(1))
                continue
            try:
                if failures:
                    yield from stash()
                    yield from on_failures(items, failures)
                if items:
                    yield Deliver(items)
            except StopDelivery:
                yield from give_back()
                return
            except (DeserializationError, Cancelled):
                yield from give_back()
                raise
    except NotSent as exc:
        raise exc.error
    except kinds.NETWORK as exc:
        held = len(pending) + len(stashed)
        what = ("the items of the %d requests in flight" % held if held > 1
                else "the items of the request in flight")
        raise lost(POPS, last, exc, what, label) from exc
