"""Workloads and contenders shared by ``redset bench`` and ``benchmarks/``.

One implementation of what /work/shared/BENCHMARKS.md describes: the
workloads W1 (strings) and W2 (JSON-like dicts, three codecs), the operations
ADD, TAKE and POP, and the contenders that do the same work against the same
server:

``limit``
    The exact RESP bytes of the commands, encoded before the clock starts,
    written to a socket; the replies are read back in bulk into a buffer of the
    size a calibration run measured, never parsed into Python objects.
``redis-py`` / ``redis-py-resp2``
    redis-py with hiredis, written by hand the best way a user would.
``redset`` / ``redset-pure`` (and ``-drain``)
    redset's compiled and pure-Python codecs, side by side in one process.

Every measured round is ``prepare()`` (untimed: empty or pre-load the key),
``run()`` (timed) and ``check()`` (untimed: count, order, nothing repeated,
what the server holds), so no number is reported for a wrong result.
"""
from __future__ import annotations

import functools
import gc
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlparse

import hiredis

__all__ = [
    "CHUNK",
    "PIPELINE_DEPTH",
    "WORKLOADS",
    "OPS",
    "CONTENDERS",
    "DEFAULT_N",
    "BenchmarkError",
    "Unavailable",
    "Workload",
    "Case",
    "bench_n",
    "pop_n",
    "make_items",
    "get_workload",
    "plan",
    "make_case",
    "contender_label",
    "add_ratios",
    "table_rows",
    "table_lines",
    "server_version",
    "pin_server",
    "pin_client",
    "machine_info",
]

#: Items per ZADD / ZPOPMIN command (the batch size the workloads define).
CHUNK = 1000
#: Commands per redis-py pipeline ``execute()`` in the hand-written contender.
PIPELINE_DEPTH = 10
#: N when neither an argument nor ``$REDSET_BENCH_N`` says otherwise.
DEFAULT_N = 200_000

WORKLOADS: Tuple[str, ...] = ("w1", "w2-json", "w2-orjson", "w2-msgpack")

#: ``--ops`` name -> (operation measured, contenders in the order they are shown).
#: ``drain`` is TAKE's work done through ``drain()``; it shares TAKE's baselines.
OPS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "add": ("add", ("limit", "redis-py", "redset", "redset-pure")),
    "take": ("take", ("limit", "redis-py", "redis-py-resp2", "redset", "redset-pure")),
    "drain": ("take", ("limit", "redis-py", "redset-drain", "redset-pure-drain")),
    "pop": ("pop", ("limit", "redis-py", "redset", "redset-pure")),
}

WORKLOAD_TITLES: Dict[str, str] = {
    "w1": "W1 strings",
    "w2-json": "W2 JSON, stdlib json",
    "w2-orjson": "W2 JSON, orjson",
    "w2-msgpack": "W2 msgpack",
}

CONTENDERS: Tuple[str, ...] = (
    "limit",
    "redis-py",
    "redis-py-resp2",
    "redset",
    "redset-pure",
    "redset-drain",
    "redset-pure-drain",
)


class BenchmarkError(AssertionError):
    """A contender gave a wrong result; its numbers must not be reported."""


class Unavailable(Exception):
    """A contender cannot run here (redset not importable, extension not built)."""


def bench_n(value: Optional[int] = None) -> int:
    """Return N: ``value``, else ``$REDSET_BENCH_N``, else 200,000."""
    if value is None:
        value = int(os.environ.get("REDSET_BENCH_N", DEFAULT_N))
    if value < 1:
        raise ValueError("N must be at least 1, got %d" % value)
    return value


def pop_n(n: int) -> int:
    """Return the item count for POP: one round trip per item, so N / 10."""
    return max(1, n // 10)


# --------------------------------------------------------------------------
# Workloads


def make_items(name: str, n: int) -> List[Any]:
    """Return the N items of workload ``name``; item i gets score i."""
    if name == "w1":
        return ["task:%d" % i for i in range(n)]
    if name in ("w2-json", "w2-orjson", "w2-msgpack"):
        return [
            {"task": i, "url": "https://example.com/page/%d" % i, "priority": i % 10}
            for i in range(n)
        ]
    raise ValueError("unknown workload %r (choose from %s)" % (name, ", ".join(WORKLOADS)))


def _json_dumps(obj: Any) -> str:
    # What a user who wants duplicates to collapse writes: one spelling per value.
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _codec(name: str) -> Tuple[Callable[[Any], Any], Optional[Callable[[Any], Any]]]:
    """(dumps, loads) as a redis-py user writes them; loads None means "use the str"."""
    if name == "w1":
        return (lambda item: item), None
    if name == "w2-json":
        return _json_dumps, json.loads
    if name == "w2-orjson":
        import orjson

        return (lambda obj: orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)), orjson.loads
    if name == "w2-msgpack":
        import msgpack

        return msgpack.packb, msgpack.unpackb
    raise ValueError("unknown workload %r" % name)


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def _pack(*args: bytes) -> bytes:
    # *3\r\n$7\r\nZPOPMIN\r\n$3\r\nkey\r\n$4\r\n1000\r\n
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


@dataclass
class Workload:
    """N items of one workload, with the bytes every contender stores for them."""

    name: str
    n: int
    items: List[Any]
    #: the stored member of each item, in score order
    members: List[bytes]
    #: the hand-written contender's serializer (returns str or bytes)
    dumps: Callable[[Any], Any]
    #: the hand-written contender's deserializer; None: the reply is the item
    loads: Optional[Callable[[Any], Any]]

    @property
    def key(self) -> bytes:
        """The key every contender of this workload uses, one after another."""
        return b"redset-bench:%s:%d" % (self.name.encode(), self.n)

    @property
    def decode_responses(self) -> bool:
        """W1 lets hiredis decode to str; W2 codecs read bytes."""
        return self.loads is None

    def load_member(self, raw: bytes) -> Any:
        """Turn a stored member back into an item (for checks, untimed)."""
        return raw.decode() if self.loads is None else self.loads(raw)

    def chunks(self) -> Iterator[range]:
        for start in range(0, self.n, CHUNK):
            yield range(start, min(start + CHUNK, self.n))

    @functools.cached_property
    def zadd_payload(self) -> bytes:
        """``ZADD key NX 0 m0 1 m1 ...`` per chunk of 1,000, concatenated."""
        key, members, out = _bulk(self.key), self.members, []
        for chunk in self.chunks():
            out.append(b"*%d\r\n$4\r\nZADD\r\n%s$2\r\nNX\r\n" % (3 + 2 * len(chunk), key))
            out.append(
                b"".join(
                    b"$%d\r\n%d\r\n$%d\r\n%s\r\n" % (len(b"%d" % i), i, len(members[i]), members[i])
                    for i in chunk
                )
            )
        return b"".join(out)

    @functools.cached_property
    def zadd_replies(self) -> bytes:
        """The server's exact answer to :attr:`zadd_payload` on an empty key."""
        return b"".join(b":%d\r\n" % len(chunk) for chunk in self.chunks())

    @functools.cached_property
    def zpopmin_payload(self) -> bytes:
        """``ZPOPMIN key 1000`` once per chunk, concatenated."""
        return _pack(b"ZPOPMIN", self.key, b"%d" % CHUNK) * len(range(0, self.n, CHUNK))

    @property
    def zpopmin_one(self) -> bytes:
        return _pack(b"ZPOPMIN", self.key)

    def redset_serializer(self) -> Any:
        """The redset serializer that does this workload's (de)serialization."""
        if self.name == "w1":
            return None  # the default: str in, str out
        from redset import serializers

        if self.name == "w2-json":
            return serializers.JSONSerializer(use_orjson=False)
        if self.name == "w2-orjson":
            return serializers.JSONSerializer()
        return serializers.MsgpackSerializer()


@functools.lru_cache(maxsize=None)
def get_workload(name: str, n: int) -> Workload:
    """Return workload ``name`` with ``n`` items (built once per process)."""
    items = make_items(name, n)
    dumps, loads = _codec(name)
    members = []
    for item in items:
        raw = dumps(item)
        members.append(raw.encode() if isinstance(raw, str) else raw)
    return Workload(name, n, items, members, dumps, loads)


# --------------------------------------------------------------------------
# A bare RESP connection (the limit, and untimed set-up and checks)


class RawConnection:
    """A socket that speaks RESP2 to one server; parsing only where untimed."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlparse(url)
        if parts.scheme not in ("redis", ""):
            raise Unavailable("the raw-socket limit speaks plain TCP only, not %r" % parts.scheme)
        self.sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.password:
            user = [unquote(parts.username).encode()] if parts.username else []
            self.call(b"AUTH", *user, unquote(parts.password).encode())
        db = (parts.path or "/0").strip("/") or "0"
        if db != "0":
            self.call(b"SELECT", db.encode())

    def close(self) -> None:
        self.sock.close()

    def exchange(self, payload: bytes, replies: int) -> Tuple[List[Any], bytes]:
        """Send ``payload``, parse ``replies`` replies; return them and the raw bytes.

        :raises BenchmarkError: on an error reply (the server's words included).
        """
        self.sock.sendall(payload)
        reader = hiredis.Reader()
        raw: List[bytes] = []
        out: List[Any] = []
        while len(out) < replies:
            reply = reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                raw.append(data)
                reader.feed(data)
                continue
            if isinstance(reply, Exception):
                raise BenchmarkError("server replied with an error: %s" % reply)
            out.append(reply)
        if reader.gets() is not False:
            raise BenchmarkError("server sent more replies than the %d expected" % replies)
        return out, b"".join(raw)

    def call(self, *args: bytes) -> Any:
        """Send one command and return its parsed reply (untimed paths only)."""
        return self.exchange(_pack(*args), 1)[0][0]

    def send_and_read(self, payload: bytes, view: memoryview) -> None:
        """Write ``payload``, then fill ``view`` with exactly ``len(view)`` reply bytes.

        The timed path of the limit: nothing is parsed; the caller compares the
        buffer with the expected bytes after the clock stops.
        """
        self.sock.sendall(payload)
        recv_into = self.sock.recv_into
        pos, end = 0, len(view)
        while pos < end:
            got = recv_into(view[pos:])
            if not got:
                raise ConnectionError("server closed the connection")
            pos += got


# --------------------------------------------------------------------------
# Cases: one contender doing one operation on one workload


class Case:
    """One contender doing one operation (add, take, pop) on one workload."""

    contender = ""

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        self.workload = workload
        self.op = op
        self.url = url
        self.admin = RawConnection(url)

    @property
    def label(self) -> str:
        return contender_label(self.contender, self.op)

    def close(self) -> None:
        """Delete the workload's key (a ``--url`` run leaves nothing behind)."""
        try:
            self.admin.call(b"DEL", self.workload.key)
        except (OSError, BenchmarkError):
            pass  # the connection broke in the round that failed; that error is reported
        finally:
            self.admin.close()

    def prepare(self) -> None:
        """Untimed: empty the key (ADD) or load the workload into it (TAKE, POP)."""
        wl = self.workload
        self.admin.call(b"DEL", wl.key)
        if self.op != "add":
            replies, raw = self.admin.exchange(wl.zadd_payload, len(range(0, wl.n, CHUNK)))
            if raw != wl.zadd_replies:
                raise BenchmarkError("pre-load of %s answered %r" % (wl.key.decode(), replies[:3]))
        # The harness holds every workload's items; a collection during the
        # timed region must not walk them, or contenders that allocate (all
        # but the limit) pay for the harness's heap rather than their own.
        gc.collect()
        gc.freeze()

    def run(self) -> Any:
        """Timed: do the work; return what :meth:`check` needs."""
        raise NotImplementedError

    def check(self, result: Any) -> None:
        """Untimed: raise :class:`BenchmarkError` unless the round did the work right."""
        wl = self.workload
        what = "%s %s %s" % (self.contender, self.op, wl.name)
        if self.op == "add":
            self.check_added(result, what)
            stored = self.admin.call(b"ZRANGE", wl.key, b"0", b"-1", b"WITHSCORES")
            if len(stored) != 2 * wl.n:
                raise BenchmarkError("%s: ZCARD is %d, not %d" % (what, len(stored) // 2, wl.n))
            for i in range(wl.n):
                if float(stored[2 * i + 1]) != i or wl.load_member(stored[2 * i]) != wl.items[i]:
                    raise BenchmarkError(
                        "%s: rank %d holds %r with score %s, not item %d"
                        % (what, i, stored[2 * i], stored[2 * i + 1], i)
                    )
            return
        self.check_taken(result, what)
        left = self.admin.call(b"ZCARD", wl.key)
        if left:
            raise BenchmarkError("%s: %d items left in %s" % (what, left, wl.key.decode()))

    def check_added(self, result: Any, what: str) -> None:
        if result != self.workload.n:
            raise BenchmarkError("%s: reported %r added, not %d" % (what, result, self.workload.n))

    def check_taken(self, result: Any, what: str) -> None:
        items = self.workload.items
        if len(result) != len(items):
            raise BenchmarkError("%s: got %d items, not %d" % (what, len(result), len(items)))
        if result != items:
            first = next(i for i, (a, b) in enumerate(zip(result, items)) if a != b)
            raise BenchmarkError(
                "%s: item %d is %r, expected %r (order or content)" % (what, first, result[first], items[first])
            )

    def measure(self) -> float:
        """Run one checked round; return the seconds :meth:`run` took."""
        self.prepare()
        start = time.perf_counter()
        result = self.run()
        elapsed = time.perf_counter() - start
        self.check(result)
        return elapsed


class LimitCase(Case):
    """Pre-encoded RESP written to a socket; replies read in bulk, not parsed."""

    contender = "limit"

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        super().__init__(workload, op, url)
        self.conn = RawConnection(url)
        wl = workload
        if op == "add":
            self.payload, self.expected = wl.zadd_payload, wl.zadd_replies
        elif op == "take":
            # Calibrate once: the same commands, replies parsed and checked, to
            # learn the exact byte count the timed rounds wait for.
            self.prepare()
            batches, self.expected = self.conn.exchange(wl.zpopmin_payload, len(range(0, wl.n, CHUNK)))
            popped = [member for batch in batches for member in batch[0::2]]
            if popped != wl.members:
                raise BenchmarkError("limit take %s: calibration popped other members" % wl.name)
            self.payload = wl.zpopmin_payload
        elif op == "pop":
            self.prepare()
            self.payload, sizes, raw = wl.zpopmin_one, [], []
            for member in wl.members:
                (reply,), data = self.conn.exchange(self.payload, 1)
                if reply[0] != member:
                    raise BenchmarkError("limit pop %s: calibration popped %r" % (wl.name, reply[0]))
                sizes.append(len(data))
                raw.append(data)
            self.sizes, self.expected = sizes, b"".join(raw)
        else:
            raise ValueError("unknown operation %r" % op)
        self.buffer = bytearray(len(self.expected))

    def close(self) -> None:
        self.conn.close()
        super().close()

    def run(self) -> Any:
        view = memoryview(self.buffer)
        if self.op != "pop":
            self.conn.send_and_read(self.payload, view)
            return self.buffer
        send_and_read, payload, pos = self.conn.send_and_read, self.payload, 0
        for size in self.sizes:
            send_and_read(payload, view[pos : pos + size])
            pos += size
        return self.buffer

    def check_added(self, result: Any, what: str) -> None:
        if result != self.expected:
            raise BenchmarkError("%s: replies differ from %r..." % (what, self.expected[:20]))

    def check_taken(self, result: Any, what: str) -> None:
        if result != self.expected:
            raise BenchmarkError("%s: replies differ from the calibration run" % what)


class RedisPyCase(Case):
    """redis-py with hiredis, written by hand the best way a user would."""

    contender = "redis-py"
    protocol: Optional[int] = None  # redis-py's default (RESP3 in redis-py 8)

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        super().__init__(workload, op, url)
        import redis

        kwargs: Dict[str, Any] = {"decode_responses": workload.decode_responses}
        if self.protocol is not None:
            kwargs["protocol"] = self.protocol
        self.client = redis.Redis.from_url(url, **kwargs)
        self.client.ping()  # connect now, not inside the first timed round

    def close(self) -> None:
        self.client.close()
        super().close()

    def run(self) -> Any:
        return getattr(self, "run_" + self.op)()

    def run_add(self) -> int:
        wl, key = self.workload, self.workload.key
        items, dumps = wl.items, wl.dumps
        pipe = self.client.pipeline(transaction=False)
        added = 0
        for chunk in wl.chunks():
            pipe.zadd(key, {dumps(items[i]): i for i in chunk}, nx=True)
            if len(pipe) >= PIPELINE_DEPTH:
                added += sum(pipe.execute())
        if len(pipe):
            added += sum(pipe.execute())
        return added

    def run_take(self) -> List[Any]:
        key, loads = self.workload.key, self.workload.loads
        pipe = self.client.pipeline(transaction=False)
        out: List[Any] = []
        while True:
            for _ in range(PIPELINE_DEPTH):
                pipe.zpopmin(key, CHUNK)
            done = False
            for batch in pipe.execute():
                if loads is None:
                    out.extend([member for member, _ in batch])
                else:
                    out.extend([loads(member) for member, _ in batch])
                done = done or len(batch) < CHUNK
            if done:
                return out

    def run_pop(self) -> List[Any]:
        zpopmin, key = self.client.zpopmin, self.workload.key
        loads = self.workload.loads or (lambda member: member)
        out: List[Any] = []
        while True:
            popped = zpopmin(key)
            if not popped:
                return out
            out.append(loads(popped[0][0]))


class RedisPyResp2Case(RedisPyCase):
    contender = "redis-py-resp2"
    protocol = 2


class RedsetCase(Case):
    """redset's own API, on the compiled or the pure-Python codec."""

    contender = "redset"
    wire = "compiled"
    drain = False

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        try:
            import redis
            from redset import SortedSet, _wire
        except ImportError as exc:
            raise Unavailable("redset is not importable: %s" % exc) from None
        codec = getattr(_wire, self.wire)
        if codec is None:
            raise Unavailable("the compiled codec redset._wire_c is not built")
        super().__init__(workload, op, url)
        self.client = redis.Redis.from_url(url)
        self.client.ping()
        self.set = SortedSet(self.client, workload.key.decode(), serializer=workload.redset_serializer())
        self.set._wire = codec

    def close(self) -> None:
        self.client.close()
        super().close()

    def run(self) -> Any:
        s = self.set
        if self.op == "add":
            return s.add_many(self.workload.items, range(self.workload.n))
        out: List[Any] = []
        if self.op == "pop":
            pop, append = s.pop, out.append
            try:
                while True:
                    append(pop())
            except KeyError:
                return out
        if self.drain:
            for batch in s.drain(CHUNK):
                out.extend(batch)
            return out
        while True:
            batch = s.take(CHUNK)
            out.extend(batch)
            if len(batch) < CHUNK:
                return out


class RedsetPureCase(RedsetCase):
    contender = "redset-pure"
    wire = "pure"


class RedsetDrainCase(RedsetCase):
    contender = "redset-drain"
    drain = True


class RedsetPureDrainCase(RedsetCase):
    contender = "redset-pure-drain"
    wire = "pure"
    drain = True


_CASES: Dict[str, type] = {
    cls.contender: cls
    for cls in (
        LimitCase,
        RedisPyCase,
        RedisPyResp2Case,
        RedsetCase,
        RedsetPureCase,
        RedsetDrainCase,
        RedsetPureDrainCase,
    )
}


def make_case(contender: str, workload: Workload, op: str, url: str) -> Case:
    """Open ``contender`` for ``op`` on ``workload`` against the server at ``url``.

    :raises Unavailable: when the contender cannot run in this environment.
    """
    case: Case = _CASES[contender](workload, op, url)
    return case


def plan(ops: Sequence[str], workloads: Sequence[str]) -> List[Tuple[str, str, str]]:
    """Return (workload, operation, contender) triples for ``--ops``/``--workloads``.

    :raises ValueError: naming an unknown operation or workload.
    """
    for op in ops:
        if op not in OPS:
            raise ValueError("unknown operation %r (choose from %s)" % (op, ", ".join(OPS)))
    for name in workloads:
        if name not in WORKLOADS:
            raise ValueError("unknown workload %r (choose from %s)" % (name, ", ".join(WORKLOADS)))
    out: List[Tuple[str, str, str]] = []
    for name in workloads:
        for flag in ops:
            op, contenders = OPS[flag]
            # POP is round-trip bound and costs the same per item whatever the
            # codec: one workload (the first asked for) shows it.
            if op == "pop" and name != workloads[0]:
                continue
            for contender in contenders:
                if (name, op, contender) not in out:
                    out.append((name, op, contender))
    return out


def contender_label(contender: str, op: str) -> str:
    """Human name of a contender for one operation."""
    if contender == "limit":
        return "limit: raw socket, pre-encoded RESP"
    if contender.startswith("redis-py"):
        resp = "RESP2" if contender.endswith("resp2") else "RESP3"
        how = {"add": "pipelined zadd", "take": "pipelined zpopmin", "pop": "zpopmin loop"}[op]
        return "redis-py + hiredis by hand, %s (%s)" % (how, resp)
    impl = "pure Python" if "pure" in contender else "compiled"
    if contender.endswith("drain"):
        call = "drain(1000)"
    else:
        call = {"add": "add_many()", "take": "take(1000) loop", "pop": "pop() loop"}[op]
    return "redset %s, %s" % (impl, call)


def add_ratios(results: List[Dict[str, Any]]) -> None:
    """Set ``ratio_limit`` and ``ratio_redis_py`` on each result (None if absent)."""
    rate = {(r["workload"], r["op"], r["contender"]): r["items_per_s"] for r in results}
    for r in results:
        limit = rate.get((r["workload"], r["op"], "limit"))
        by_hand = rate.get((r["workload"], r["op"], "redis-py"))
        r["ratio_limit"] = r["items_per_s"] / limit if limit else None
        r["ratio_redis_py"] = r["items_per_s"] / by_hand if by_hand else None


def _ratio(value: Optional[float]) -> str:
    return "—" if value is None else "%.2f" % value


def table_rows(results: List[Dict[str, Any]]) -> List[Tuple[str, List[Tuple[str, str, str, str]]]]:
    """Group results by workload and operation into titled rows of strings:
    (contender, items/s, ratio to the limit, ratio to redis-py by hand)."""
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["workload"], r["op"]), []).append(r)
    out = []
    for (workload, op), rows in groups.items():
        title = "%s · %s · N = %s" % (WORKLOAD_TITLES.get(workload, workload), op.upper(), format(rows[0]["n"], ","))
        out.append((
            title,
            [
                (r["label"], format(round(r["items_per_s"]), ","), _ratio(r["ratio_limit"]), _ratio(r["ratio_redis_py"]))
                for r in rows
            ],
        ))
    return out


def table_lines(results: List[Dict[str, Any]]) -> List[str]:
    """The plain-text table of :func:`table_rows` (``redset bench``, pytest summary)."""
    lines: List[str] = []
    head = ("contender", "items/s", "x limit", "x redis-py")
    for title, rows in table_rows(results):
        width = max(len(head[0]), *(len(r[0]) for r in rows))
        lines += ["", title]
        lines += ["  %-*s  %12s  %8s  %10s" % (width, *row) for row in [head, *rows]]
    return lines


# --------------------------------------------------------------------------
# Pinning and the machine


def server_version(url: str) -> str:
    """Return ``"valkey 8.1.8"`` or ``"redis 7.2.4"`` for the server at ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    if "valkey_version" in info:
        return "valkey %s" % info["valkey_version"]
    return "redis %s" % info.get("redis_version", "?")


def pin_server(pid: int, cpu: int = 0) -> str:
    """Pin every thread of process ``pid`` to ``cpu``; return how, or why not."""
    if (os.cpu_count() or 1) < 2:
        return "server not pinned: one CPU"
    if shutil.which("taskset"):
        done = subprocess.run(
            ["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, text=True
        )
        if done.returncode == 0:
            return "server pinned to CPU %d (taskset -a)" % cpu
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            os.sched_setaffinity(int(tid), {cpu})
    except (OSError, AttributeError) as exc:
        return "server not pinned: %s" % exc
    return "server pinned to CPU %d (sched_setaffinity)" % cpu


def pin_client(cpu: int = 1) -> str:
    """Pin this process to ``cpu``; return how, or why not."""
    if (os.cpu_count() or 1) < 2:
        return "client not pinned: one CPU"
    try:
        os.sched_setaffinity(0, {cpu})
    except (OSError, AttributeError) as exc:
        return "client not pinned: %s" % exc
    return "client pinned to CPU %d (sched_setaffinity)" % cpu


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _source_commit() -> Optional[str]:
    """The git commit redset was imported from ("+dirty" with local changes), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info(server: str, pinning: str) -> Dict[str, Any]:
    """Describe the machine, the versions and the pinning of a run."""
    try:
        from redset import _wire

        extensions: Optional[bool] = bool(_wire.USE_EXTENSIONS)
        compiled_built = _wire.compiled is not None
    except ImportError:
        extensions, compiled_built = None, False
    try:
        import redset

        redset_version = getattr(redset, "__version__", None) or _version("redset")
    except ImportError:
        redset_version = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "redis-py": _version("redis"),
        "hiredis": _version("hiredis"),
        "orjson": _version("orjson"),
        "msgpack": _version("msgpack"),
        "redset": redset_version,
        "redset_commit": _source_commit(),
        "redset_extensions_default": extensions,
        "redset_compiled_built": compiled_built,
        "server": server,
        "pinning": pinning,
    }
