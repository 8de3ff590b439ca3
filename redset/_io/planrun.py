"""One plan being run by a driver: stepping it, and the I/O state it holds.

Shared by the sync and asyncio drivers, which differ only in how they wait.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Optional

from redset._core.steps import RAW, Drop, Recv, Send, Sleep
from redset._io.replies import READ, PopState

__all__ = ["PlanRun", "joined", "client_ops"]


def joined(cmds: Any) -> bytes:
    """One buffer for one write: redis-py writes each list element with its own sendall()."""
    return cmds[0].packed if len(cmds) == 1 else b"".join([c.packed for c in cmds])


class PlanRun:
    """A plan in progress.

    The driver answers each request by setting :attr:`answer` (or
    :attr:`error`, thrown into the plan) before asking for the next one.
    """

    __slots__ = ("plan", "answer", "error", "result", "conn", "stream", "pops", "unread", "queued", "reply", "node", "skip", "ask")

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.answer: Any = None
        self.error: Optional[BaseException] = None
        #: What the plan returned, once :meth:`requests` is exhausted.
        self.result: Any = None
        self.conn: Any = None
        #: The socket (sync) or stream (asyncio) pops are read from, if any.
        self.stream: Any = None
        self.pops: Optional[PopState] = None
        #: Replies sent for and not read: the connection is clean at 0.
        self.unread = 0
        #: Commands sent and not yet run (the client fallback drivers).
        self.queued: List[Any] = []
        #: The reply to the command :func:`client_ops` yielded last.
        self.reply: Any = None
        #: The cluster node :attr:`conn` belongs to (cluster drivers).
        self.node: Any = None
        #: ``ASKING`` replies to read and drop before the next reply (cluster drivers).
        self.skip = 0
        #: The node named by ``-ASK``: the next Send goes there, after ASKING.
        self.ask: Any = None

    def requests(self) -> Iterator[Any]:
        """The plan's requests, one at a time, until it returns (:attr:`result`)."""
        plan = self.plan
        while True:
            answer, error = self.answer, self.error
            self.answer = self.error = None
            try:
                req = plan.send(answer) if error is None else plan.throw(error)
            except StopIteration as stop:
                self.result = stop.value
                return
            yield req


def client_ops(st: PlanRun, req: Any, wire: Any) -> Iterator[Any]:
    """How a client fallback driver answers ``req``: it runs each command this
    yields through the client (putting the reply in ``st.reply``) and sleeps
    for each float; the answer ends in ``st.answer``.

    Sent commands only queue: a client runs a command when it is read.
    """
    kind = type(req)
    if kind is Send:
        st.queued.extend(req.cmds)
    elif kind is Recv:
        if req.mode == RAW:
            yield st.queued.pop(0)
            st.answer = st.reply
            return
        if st.pops is None:
            st.pops = PopState(wire, False, memoryview(b""))
        steps = st.pops.answer(req)
        result: Any = None
        while True:
            try:
                need = steps.send(result)
            except StopIteration as done:
                st.answer = done.value
                return
            result = None
            if need is READ:
                yield st.queued.pop(0)
                result = st.reply
            elif isinstance(need, list):  # commands sent ahead
                st.queued.extend(need)
    elif kind is Sleep:
        yield float(req.seconds)
    elif kind is Drop:
        st.queued.clear()
    else:
        raise TypeError("a plan yielded %r" % (req,))
