"""Subprocess entry points for tests/test_faults.py (spawned, so importable).

Workers report to the parent over a one-way ``multiprocessing`` pipe with
``send_bytes``: a synchronous ``write(2)`` of one small message (under
PIPE_BUF, so atomic), which stays in the kernel's pipe buffer when the worker
is SIGKILLed right after. A worker therefore reports what it is about to rely
on *before* the next step, and the parent knows what a killed worker held.
"""
from __future__ import annotations

import time
from typing import Any

import redis

from redset import SortedSet
from redset.exceptions import StaleLeaseError


def use_wire(name: str) -> None:
    """Make sets built from now on use the compiled ("c") or pure ("py") codec."""
    import redset._wire

    redset._wire.impl = redset._wire.pure if name == "py" else redset._wire.compiled


def _idle(client: redis.Redis, s: SortedSet) -> bool:
    """True when nothing waits and nothing is in flight (read atomically)."""
    pipe = client.pipeline(transaction=True)
    pipe.zcard(s._lease_keys[0])
    pipe.zcard(s._lease_keys[1])
    waiting, inflight = pipe.execute()
    return waiting == 0 and inflight == 0


def leased_consumer(url: str, key: str, wire: str, batch: int, lease: float, out: Any) -> None:
    """Take leased batches and ack every item until the set is drained.

    Messages (space-separated, bytes):
    ``L <item>:<deliveries> ...`` after a take returned, before any ack;
    ``A <item>`` after an ack returned; ``S <item>`` after a stale ack.
    """
    use_wire(wire)
    client = redis.Redis.from_url(url)
    s = SortedSet(client, key, leased=True)
    while True:
        leases = s.take(batch, lease=lease, timeout=0.2)
        if not leases:
            if _idle(client, s):
                break
            continue
        out.send_bytes(b"L " + b" ".join(b"%s:%d" % (x.member, x.deliveries) for x in leases))
        for x in leases:
            try:
                x.ack()
            except StaleLeaseError:
                out.send_bytes(b"S " + x.member)
            else:
                out.send_bytes(b"A " + x.member)
    out.send_bytes(b"E")
    out.close()


def stale_acker(url: str, key: str, wire: str, conn: Any) -> None:
    """Serve trials: lease one item, tell the parent, wait for "finish", ack.

    The parent SIGSTOPs this process while it waits, lets the lease expire,
    re-leases and acks the item as another consumer, sends "finish" and
    SIGCONTs: the ack here must be rejected as stale.
    """
    use_wire(wire)
    client = redis.Redis.from_url(url)
    s = SortedSet(client, key, leased=True)
    conn.send(("ready",))
    while True:
        cmd = conn.recv()
        if cmd[0] == "exit":
            break
        _, lease, op = cmd
        got = s.take(1, lease=lease)
        if not got:
            conn.send(("empty",))
            continue
        held = got[0]
        conn.send(("took", held.item, held.deadline, held.deliveries, held.token))
        msg = conn.recv()  # "work" until told to finish (SIGSTOPped meanwhile)
        assert msg == ("finish",), msg
        woke = time.time()
        try:
            if op == "ack":
                held.ack()
            elif op == "nack":
                held.nack()
            else:
                held.extend(30)
        except StaleLeaseError as exc:
            conn.send(("stale", woke, exc.token))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(("error", repr(exc)))
        else:
            conn.send(("accepted", woke))
    conn.close()
