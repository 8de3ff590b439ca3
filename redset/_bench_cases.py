"""The sync contenders: one contender doing one operation on one workload.
See :mod:`redset._benchmark`."""
from __future__ import annotations

import gc
import importlib
import time
from typing import Any, Dict, List, Optional

from redset._bench_core import CHUNK, LEASE_SECONDS, PIPELINE_DEPTH, collect_pops, BenchmarkError, RawConnection, Unavailable, Workload
from redset._bench_report import contender_label

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

    #: CPU seconds (user + system, this process) of the last :meth:`measure`.
    cpu_s = 0.0

    def measure(self) -> float:
        """Run one checked round; return the seconds :meth:`run` took (and
        leave the process's CPU seconds meanwhile in :attr:`cpu_s`)."""
        self.prepare()
        cpu = time.process_time()
        start = time.perf_counter()
        result = self.run()
        elapsed = time.perf_counter() - start
        self.cpu_s = time.process_time() - cpu
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
        pipe = self.client.pipeline(transaction=False)
        added = 0
        for mapping in wl.mappings():
            pipe.zadd(key, mapping, nx=True)
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
            if collect_pops(pipe.execute(), loads, out):
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


def client_class(name: str, asyncio: bool = False) -> Any:
    """The client class of library ``name`` (or of its asyncio twin); Unavailable if not installed."""
    from redset._io.clientlib import library

    try:
        lib = library(name)
        return lib.asyncio_classes()[0] if asyncio else lib.Redis
    except ImportError as exc:
        raise Unavailable("%s is not installed (pip install %s)" % (name, name)) from exc


def redset_codec(name: str) -> Any:
    """redset's ``"compiled"`` or ``"pure"`` codec, or :class:`Unavailable`."""
    from redset import _wire

    codec = getattr(_wire, name)
    if codec is None:
        raise Unavailable("the compiled codec redset._wire_c is not built: %s" % _wire.implementation())
    return codec


def open_set(cls: Any, client: Any, workload: Workload, codec: Any) -> Any:
    """A redset set of class ``cls`` on the workload's key, with its serializer and ``codec``."""
    s = cls(client, workload.key.decode(), serializer=workload.redset_serializer())
    s._wire = codec
    return s


class RedsetCase(Case):
    """redset's own API, on the compiled or the pure-Python codec."""

    contender = "redset"
    wire = "compiled"
    drain = False
    #: Take with leases (``take(1000, lease=30)``) and ack each batch with ``ack_many``.
    lease = False

    #: The module whose SortedSet is measured.
    set_module = "redset"
    #: The client library the set talks through: "redis" (redis-py) or "valkey" (valkey-py).
    client_lib = "redis"

    def __init__(self, workload: Workload, op: str, url: str) -> None:
        codec = redset_codec(self.wire)
        super().__init__(workload, op, url)
        self.client = self.connect(url)
        self.set = open_set(importlib.import_module(self.set_module).SortedSet, self.client, workload, codec)

    def connect(self, url: str) -> Any:
        client = client_class(self.client_lib).from_url(url)
        client.ping()  # connect now, not inside the first timed round
        return client

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
        if self.lease:
            while True:
                leases = s.take(CHUNK, lease=LEASE_SECONDS)
                out.extend([x.item for x in leases])
                s.ack_many(leases)
                if len(leases) < CHUNK:
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


class RedsetLeaseCase(RedsetCase):
    contender = "redset-lease"
    lease = True

    def prepare(self) -> None:
        self.set.clear()  # the lease keys too (a failed round may leave some)
        super().prepare()

    def check(self, result: Any) -> None:
        super().check(result)
        left = self.set.in_flight()
        if left:
            raise BenchmarkError("%s: %d leases left in flight" % (self.contender, left))


class RedsetPureLeaseCase(RedsetLeaseCase):
    contender = "redset-pure-lease"
    wire = "pure"
