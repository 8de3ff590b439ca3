"""The drain plan: pop batches until the set is empty, the next pop in flight."""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple


from redset._codec import Codec
from redset._core import kinds

from redset._core.calls import follow, lost, put_back, read_popped
from redset._core.errors import named_error
from redset.exceptions import DeserializationError
from redset._core.steps import (
    POP, POPS, Cancelled, Cmd, Deliver, NotSent, Plan, Recv, Redirected, Send,
    StopDelivery,
)

__all__ = ["pop_batches"]

Failures = List[Tuple[bytes, BaseException]]


def pop_batches(wire: Codec, make_request: Callable[[], Sequence[Any]], batch_size: int, codec: int,
                loads: Any, restore_key: bytes, on_failures: Callable[[List[Any], Failures], Plan[None]],
                label: Any = None) -> Plan[None]:
    """Deliver the items of each pop until a pop returns fewer than
    ``batch_size`` members.

    Members that fail to decode go to ``on_failures(items, failures)`` (a
    plan) first; a batch left empty by that is not delivered.

    The next pop is sent as soon as the header of the current reply shows a
    full batch, so the server works on it while this one is received and
    decoded. If the caller stops early (:class:`StopDelivery`) with a pop in
    flight, that pop's members are read and put back with ``ZADD NX`` at
    their scores on ``restore_key``.

    :raises PopOutcomeUnknown: the connection failed with pops in flight
        (two when it broke while a reply was received after the next pop
        had been sent on the strength of its header).
    """
    pending: List[Sequence[Any]] = [make_request()]  # requests sent, oldest first
    last = pending[0]  # the newest request, named if the connection is lost
    sent = 0  # replies not yet read
    redirects = 0

    def ahead(count: int) -> Optional[List[Cmd]]:
        # The server has made this reply: put the next pop in flight now, so
        # that it works on it while this one is received and decoded.
        nonlocal sent, last
        if count < batch_size:
            return None
        args = last = make_request()
        pending.append(args)
        sent += 1
        return [Cmd(wire.pack_command(args), args)]

    try:
        yield Send([Cmd(wire.pack_command(pending[0]), pending[0])])
        sent = 1
        while True:
            try:
                reply = yield Recv(POP, codec, loads, ahead)
            except Redirected as exc:  # refused by a cluster node: no pop in flight ran
                redirects = yield from follow(exc, redirects, last, label)
                yield Send([Cmd(wire.pack_command(args), args) for args in pending])
                continue
            except Cancelled:
                while sent:  # popped, never delivered: put them back
                    sent -= 1
                    yield from put_back(wire, restore_key, (yield from read_popped()))
                raise
            sent -= 1
            args = pending.pop(0)
            if isinstance(reply, kinds.RESPONSE):
                # A pop sent after this one's header may be in flight: the
                # driver closes the connection as the error leaves the plan.
                raise named_error(reply, args, label)
            items, failures = reply
            try:
                if failures:
                    yield from on_failures(items, failures)
                if items:
                    yield Deliver(items)
            except StopDelivery:
                yield from _put_back(wire, restore_key, sent)
                return
            except (DeserializationError, Cancelled):
                yield from _put_back(wire, restore_key, sent)
                raise
            if not pending:
                return
    except NotSent as exc:
        raise exc.error
    except kinds.NETWORK as exc:
        what = ("the items of the %d requests in flight" % sent if sent > 1
                else "the items of the request in flight")
        raise lost(POPS, last, exc, what, label) from exc


def _put_back(wire: Codec, key: bytes, sent: int) -> Plan[None]:
    """Read the pop still in flight (if any) and put its members back at
    their scores: they were popped but never handed over."""
    if sent:
        yield from put_back(wire, key, (yield from read_popped()))
