"""Micro-benchmark of the wire codec, no server: ns per item for each twin and baseline.

Encodes one 1,000-item ``ZADD`` and decodes one 1,000-member ZPOPMIN reply
(RESP2, parsed once by hiredis) for

* W1: members ``"task:%d" % i`` with int scores ``i`` (CODEC_DEFAULT);
* W2: members ``{"task": i, "url": "https://example.com/page/%d" % i,
  "priority": i % 10}`` with CODEC_JSON and CODEC_MSGPACK,

and compares with ``hiredis.pack_command`` (args prebuilt, and built from the
items as a caller must) and with redis-py's ``Connection.pack_command``.
Every contender's output is checked before it is timed.

Run: ``python benchmarks/micro_wire.py [--repeat 7] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import timeit
from typing import Any, Callable, Dict, List, Optional, Tuple

import hiredis
import msgpack
import orjson
import redis
from redis.connection import Connection, PythonRespSerializer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from redset import _wire  # noqa: E402
from redset import _wire_py as P  # noqa: E402

C = _wire.compiled
N = 1000
KEY = b"bench:queue"


def w1() -> Tuple[List[Any], List[Any]]:
    return ["task:%d" % i for i in range(N)], list(range(N))


def w2() -> Tuple[List[Any], List[Any]]:
    return [{"task": i, "url": "https://example.com/page/%d" % i, "priority": i % 10} for i in range(N)], list(range(N))


def best_ns_per_item(fn: Callable[[], Any], repeat: int, items: int = N) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number / items * 1e9


def flat_args(items: List[Any], scores: List[Any]) -> List[Any]:
    args: List[Any] = ["ZADD", KEY]
    for score, member in zip(scores, items):
        args.append(score)
        args.append(member)
    return args


def popped_reply(members: List[bytes]) -> List[Any]:
    body = b"".join(b"$%d\r\n%s\r\n$%d\r\n%d\r\n" % (len(m), m, len(b"%d" % i), i) for i, m in enumerate(members))
    reader = hiredis.Reader()
    reader.feed(b"*%d\r\n%s" % (2 * len(members), body))
    return reader.gets()


def encode_rows(repeat: int) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []

    def add(workload: str, name: str, fn: Callable[[], Any]) -> None:
        rows.append({"op": "encode", "workload": workload, "contender": name,
                     "ns_per_item": best_ns_per_item(fn, repeat)})

    items, scores = w1()
    expected = P.pack_zadd(KEY, (), items, scores, P.CODEC_DEFAULT, None)
    args = flat_args(items, scores)
    conn = Connection()
    python_packer = PythonRespSerializer(conn._buffer_cutoff, conn.encoder.encode)
    assert hiredis.pack_command(tuple(args)) == expected
    assert b"".join(conn.pack_command(*args)) == expected
    assert b"".join(python_packer.pack(*args)) == expected
    if C is not None:
        assert C.pack_zadd(KEY, (), items, scores, C.CODEC_DEFAULT, None) == expected
        add("W1", "redset._wire_c.pack_zadd", lambda: C.pack_zadd(KEY, (), items, scores, 0, None))
    add("W1", "redset._wire_py.pack_zadd", lambda: P.pack_zadd(KEY, (), items, scores, 0, None))
    targs = tuple(args)
    add("W1", "hiredis.pack_command (args prebuilt)", lambda: hiredis.pack_command(targs))
    add("W1", "hiredis.pack_command (args built)", lambda: hiredis.pack_command(tuple(flat_args(items, scores))))
    add("W1", "redis-py Connection.pack_command (hiredis)", lambda: conn.pack_command(*args))
    add("W1", "redis-py PythonRespSerializer.pack", lambda: python_packer.pack(*args))

    items, scores = w2()
    for codec, label, dumps in (
        (P.CODEC_JSON, "W2-json", lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS)),
        (P.CODEC_MSGPACK, "W2-msgpack", lambda v: msgpack.packb(v, use_bin_type=True)),
    ):
        expected = P.pack_zadd(KEY, (), items, scores, codec, None)
        if C is not None:
            assert C.pack_zadd(KEY, (), items, scores, codec, None) == expected
            add(label, "redset._wire_c.pack_zadd", lambda c=codec: C.pack_zadd(KEY, (), items, scores, c, None))
        add(label, "redset._wire_py.pack_zadd", lambda c=codec: P.pack_zadd(KEY, (), items, scores, c, None))
        assert hiredis.pack_command(tuple(flat_args([dumps(v) for v in items], scores))) == expected
        add(label, "dumps + hiredis.pack_command",
            lambda d=dumps: hiredis.pack_command(tuple(flat_args([d(v) for v in items], scores))))
    return rows


def decode_rows(repeat: int) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []

    def add(workload: str, name: str, fn: Callable[[], Any]) -> None:
        rows.append({"op": "decode", "workload": workload, "contender": name,
                     "ns_per_item": best_ns_per_item(fn, repeat)})

    items, _ = w1()
    reply = popped_reply([m.encode() for m in items])
    members = reply[0::2]
    for mod in (P, C):
        if mod is None:
            continue
        failures: List[Any] = []
        assert mod.decode_items(reply, mod.CODEC_DEFAULT, None, failures, True) == items and not failures
    if C is not None:
        add("W1", "redset._wire_c.decode_items", lambda: C.decode_items(reply, 0, None, [], True))
    add("W1", "redset._wire_py.decode_items", lambda: P.decode_items(reply, 0, None, [], True))
    add("W1", "[m.decode() for m in reply[0::2]]", lambda: [m.decode() for m in reply[0::2]])
    decode = bytes.decode
    add("W1", "bytes.decode only (map)", lambda: list(map(decode, members)))

    items, _ = w2()
    for codec, label, raw_members, loads in (
        (P.CODEC_JSON, "W2-json", [P.json_dumps_canonical(v) for v in items], orjson.loads),
        (P.CODEC_MSGPACK, "W2-msgpack", [msgpack.packb(v, use_bin_type=True) for v in items],
         lambda b: msgpack.unpackb(b, raw=False, strict_map_key=False)),
    ):
        reply = popped_reply(raw_members)
        for mod in (P, C):
            if mod is not None:
                assert mod.decode_items(reply, codec, None, [], True) == items
        if C is not None:
            add(label, "redset._wire_c.decode_items", lambda c=codec, r=reply: C.decode_items(r, c, None, [], True))
        add(label, "redset._wire_py.decode_items", lambda c=codec, r=reply: P.decode_items(r, c, None, [], True))
        add(label, "[loads(m) for m in reply[0::2]]", lambda r=reply, f=loads: [f(m) for m in r[0::2]])
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timing repeats; the best is kept")
    parser.add_argument("--json", metavar="PATH", help="also save the rows and the environment as JSON")
    opts = parser.parse_args(argv)
    if C is None:
        print("redset._wire_c is not built; timing the pure-Python twin only", file=sys.stderr)
    env = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "processor": platform.processor(),
        "hiredis": hiredis.__version__,
        "redis": redis.__version__,
        "orjson": orjson.__version__,
        "msgpack": ".".join(map(str, msgpack.version)),
    }
    rows = encode_rows(opts.repeat) + decode_rows(opts.repeat)
    print("  ".join("%s %s" % kv for kv in env.items()))
    last = None
    for row in rows:
        group = (row["op"], row["workload"])
        if group != last:
            print("\n%s %s (%d items)" % (row["op"], row["workload"], N))
            base = row["ns_per_item"]
            last = group
        print("  %-45s %9.1f ns/item  %6.2fx" % (row["contender"], row["ns_per_item"], row["ns_per_item"] / base))
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"environment": env, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
