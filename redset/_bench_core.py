"""Workloads of the benchmark (W1, W2) and the bare RESP connection the limit
and the untimed set-up and checks use. See :mod:`redset._benchmark`."""
from __future__ import annotations

import functools
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urlparse

import hiredis

#: Items per ZADD / ZPOPMIN command (the batch size the workloads define).
CHUNK = 1000
#: Commands per redis-py pipeline ``execute()`` in the hand-written contender.
PIPELINE_DEPTH = 10
#: N when neither an argument nor ``$REDSET_BENCH_N`` says otherwise.
DEFAULT_N = 200_000
#: The lease of the leased-take contenders (never reached: each batch is acked at once).
LEASE_SECONDS = 30.0

WORKLOADS: Tuple[str, ...] = ("w1", "w2-json", "w2-orjson", "w2-msgpack")

#: Client libraries redset's contenders can run through (``--clients``).
CLIENT_LIBS: Tuple[str, ...] = ("redis", "valkey")
#: A redset contender's name with this suffix runs it through valkey-py.
VALKEY_SUFFIX = "-valkey"

#: ``--ops`` name -> (operation measured, contenders in the order they are shown).
#: ``drain`` is TAKE's work done through ``drain()``, ``lease`` through leased takes
#: settled with ``ack_many`` (beside the plain take loop); both share TAKE's baselines.
OPS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "add": ("add", ("limit", "redis-py", "redset", "redset-pure", "redis-py-async", "redset-async")),
    "take": ("take", ("limit", "redis-py", "redis-py-resp2", "redset", "redset-pure", "redis-py-async",
                      "redset-async")),
    "drain": ("take", ("limit", "redis-py", "redset-drain", "redset-pure-drain", "redset-async-drain")),
    "lease": ("take", ("limit", "redis-py", "redset", "redset-lease", "redset-pure", "redset-pure-lease",
                       "redset-async", "redset-async-lease")),
    "pop": ("pop", ("limit", "redis-py", "redset", "redset-pure", "redis-py-async", "redset-async")),
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
    "redis-py-async",
    "redset-async",
    "redset-async-drain",
    "redset-lease",
    "redset-pure-lease",
    "redset-async-lease",
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

    def mappings(self) -> Iterator[Dict[Any, int]]:
        """``{dumps(item): score}`` per chunk, encoded as it is asked for (so
        inside the timed region), as a redis-py user passes them to zadd()."""
        items, dumps = self.items, self.dumps
        for chunk in self.chunks():
            yield {dumps(items[i]): i for i in chunk}

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


def collect_pops(replies: List[Any], loads: Optional[Callable[[Any], Any]], out: List[Any]) -> bool:
    """Append the members of pipelined ``ZPOPMIN key 1000`` replies to ``out``,
    loaded as a redis-py user would; True once a reply came back short (empty)."""
    done = False
    for batch in replies:
        if loads is None:
            out.extend([member for member, _ in batch])
        else:
            out.extend([loads(member) for member, _ in batch])
        done = done or len(batch) < CHUNK
    return done


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

    def round_trip(self, count: int = 2000) -> Dict[str, float]:
        """What one bare round trip costs here: ``count`` PINGs one after the
        other; the mean wall time and CPU time of this process (user +
        system) per PING, in µs. A take loop pays this once per batch; on some
        virtual machines the kernel's wake-up makes it dear."""
        ping, buf = b"*1\r\n$4\r\nPING\r\n", bytearray(64)
        self.sock.sendall(ping)
        self.sock.recv_into(buf)  # warm
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(count):
            self.sock.sendall(ping)
            got = 0
            while got < 7:  # "+PONG\r\n"
                more = self.sock.recv_into(buf)
                if not more:
                    raise ConnectionError("server closed the connection")
                got += more
        wall = time.perf_counter() - start
        return {"wall_us": wall / count * 1e6, "cpu_us": (time.process_time() - cpu) / count * 1e6}

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
