"""The requests a plan yields, and what a driver answers to each.

A plan holds one connection for its whole run (the driver takes it at the
first :class:`Send` and gives it back when the plan ends), so replies come
back in the order the commands were sent.

========================  ===================================================
request                   the driver answers
========================  ===================================================
``Send(cmds)``            ``None`` once the commands are written
``Recv(RAW)``             the next reply, members as bytes; an error reply is
                          returned as a redis-py ``ResponseError`` *value*
``Recv(POP, codec, ..)``  ``(items, failures)``: the next pop reply decoded.
                          With ``ahead``, the driver calls ``ahead(count)``
                          as soon as the reply's header shows how many
                          members it holds, and sends the commands it
                          returns at once, before the rest is read
``Recv(PAIRS)``           ``[(member, score), ...]`` of the next pop reply,
                          undecoded (to put items back)
``Recv(LEASES, .., leases=(cls, batch, deliveries))``
                          ``(handles, failures)``: one lease handle of class
                          ``cls`` per member that decodes (see the codec's
                          ``PopReader.gets``)
``Sleep(seconds)``        ``None`` after the pause
``Drop()``                ``None``; the connection is closed (its state is
                          unknown) and a new one is taken at the next Send
``Deliver(value)``        ``None``; ``value`` was handed to the caller of an
                          iterating plan (``drain``, the consumer loop).
                          When that caller stops, :class:`StopDelivery` is
                          thrown into the plan instead, which then finishes.
========================  ===================================================

Errors a driver throws into the plan, at the request that failed: the
network error itself (redis-py's ``ConnectionError``/``TimeoutError``, or
``OSError``) once anything may have been sent on the connection,
:class:`NotSent` when taking a connection failed, so nothing was sent, and
(cluster drivers) :class:`Redirected` when a node refused every command in
flight, so none of them ran.
"""
from __future__ import annotations

from typing import Any, Callable, Generator, Optional, Sequence, Tuple, TypeVar

__all__ = [
    "Cmd", "Send", "Recv", "Sleep", "Drop", "Deliver", "StopDelivery", "NotSent", "Cancelled",
    "Redirected", "MAX_REDIRECTS", "Fan", "FanResult",
    "RAW", "POP", "PAIRS", "LEASES", "SAFE", "ONCE", "POPS", "Plan",
]

T = TypeVar("T")
#: A plan: yields requests, is sent their answers, returns a result.
Plan = Generator[Any, Any, T]

# What a command may go through after a lost connection.
SAFE = 0  #: re-sent (reads, ZADD NX, idempotent writes)
ONCE = 1  #: never re-sent: OutcomeUnknown (lease settles)
POPS = 2  #: never re-sent: PopOutcomeUnknown (it removes items)

# How a reply is read.
RAW = 0
POP = 1
PAIRS = 2
LEASES = 3


class Cmd:
    """One command: its RESP bytes for the direct drivers, its arguments for
    the client fallback (built only when asked for)."""

    __slots__ = ("packed", "_args", "_make_args")

    def __init__(self, packed: bytes, args: Optional[Sequence[Any]] = None,
                 make_args: Optional[Callable[[], Sequence[Any]]] = None) -> None:
        self.packed = packed
        self._args = args
        self._make_args = make_args

    @property
    def args(self) -> Sequence[Any]:
        """The command's arguments (``execute_command(*args)``)."""
        if self._args is None:
            assert self._make_args is not None
            self._args = self._make_args()
        return self._args

    def __repr__(self) -> str:
        return "<Cmd %r>" % (self.packed[:60],)


class Send:
    """Write these commands, in one write, on the plan's connection."""

    __slots__ = ("cmds",)

    def __init__(self, cmds: Sequence[Cmd]) -> None:
        self.cmds = cmds


class Recv:
    """Read the next reply, in one of the modes RAW, POP, PAIRS, LEASES."""

    __slots__ = ("mode", "codec", "loads", "ahead", "leases")

    def __init__(self, mode: int, codec: int = 0, loads: Optional[Callable[[Any], Any]] = None,
                 ahead: Optional[Callable[[int], Optional[Sequence[Cmd]]]] = None,
                 leases: Optional[Tuple[Any, Any, Any]] = None) -> None:
        self.mode = mode
        self.codec = codec
        self.loads = loads
        self.ahead = ahead
        self.leases = leases


class Sleep:
    """Pause for ``seconds`` (the plan computed how long)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Drop:
    """Close the plan's connection: what is left on it is of no use."""

    __slots__ = ()


class Deliver:
    """Hand ``value`` to the caller of an iterating plan."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Fan:
    """Run each ``(set, plan)`` of ``jobs`` on that set's own driver, at the
    same time, and answer with one :class:`FanResult` per job, in order.

    Only a sharded set's plans yield it (its shards live on other keys, and
    on a cluster on other nodes); such a plan yields nothing else but
    :class:`Sleep` and :class:`Deliver`. Every job runs to its end, whatever
    the others do. If the caller is interrupted meanwhile (asyncio
    cancellation, KeyboardInterrupt), the driver still waits for every job,
    then throws :class:`Cancelled` into the plan, with the jobs' results as
    its ``results`` attribute, so that the plan can put back what the
    finished jobs popped before the interruption goes on.
    """

    __slots__ = ("jobs",)

    def __init__(self, jobs: Sequence[Tuple[Any, Any]]) -> None:
        self.jobs = jobs


class FanResult:
    """What one job of a :class:`Fan` ended with: ``value``, or ``error``."""

    __slots__ = ("value", "error")

    def __init__(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        self.value = value
        self.error = error

    def get(self) -> Any:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value


class StopDelivery(Exception):
    """Thrown into an iterating plan when its caller stops taking values."""


class Cancelled(BaseException):
    """Thrown into a plan whose asyncio task was cancelled at a request.

    The plan is then run to its end in a shielded task: a plan that has
    popped items reads their reply and puts them back before it re-raises;
    any other plan just re-raises (its connection is closed, never reused).
    """


class NotSent(Exception):
    """Taking a connection failed: nothing of the request was sent.

    ``error`` is the driver's exception, which the plan raises unless it
    retries.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class Redirected(Exception):
    """Thrown into a plan at a :class:`Recv` when a cluster node refused the
    commands in flight: the reply to this one and to every command sent
    after it was ``-MOVED``, ``-ASK``, ``-TRYAGAIN`` or ``-CLUSTERDOWN``, so
    none of them ran, whatever their kind. The driver has read them all (its
    connection is clean) and routed the plan's next :class:`Send` to the
    node named; the plan re-sends every command it has not had a reply to,
    after ``delay`` seconds (a :class:`Sleep`) when that is not 0.

    ``error`` is the node's reply (redis-py's ``MovedError`` etc.), raised
    by the plan once it gives up (:data:`MAX_REDIRECTS`).
    """

    def __init__(self, error: BaseException, delay: float = 0.0) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay


#: Redirects a plan follows for one command before it raises the last one.
MAX_REDIRECTS = 16

RECV_RAW = Recv(RAW)
RECV_PAIRS = Recv(PAIRS)
DROP = Drop()
