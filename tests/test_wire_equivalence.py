"""The compiled and the pure-Python wire codecs are twins: same output, same errors.

Every property feeds the same input to ``redset._wire_py`` and
``redset._wire_c`` and requires byte-identical output, or the same exception
type with the same message, ``index``, ``sent`` and ``__cause__`` type.
Decoders are fed replies that ``hiredis.Reader`` parsed from RESP2 and RESP3
bytes, split at random chunk boundaries (and at every byte for small ones).

``REDSET_HYPOTHESIS_EXAMPLES`` sets the number of examples per property
(300 by default; CI runs 2000; 10000 before a release). A missing compiled module fails these tests
unless ``--no-c-extensions`` or ``REDSET_NO_EXTENSIONS`` says it is not built.
"""
from __future__ import annotations

import decimal
import enum
import inspect
import json
import math
import os
from types import ModuleType
from typing import Any, Callable, List, Optional, Tuple

import hiredis
import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redset import _wire
from redset import _wire_py as P
from redset import _wire_py_codec as P_codec  # the pure twin's internals

pytestmark = pytest.mark.c_extension

settings.register_profile(
    "redset-wire",
    max_examples=int(os.environ.get("REDSET_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("redset-wire")

CODECS = [P.CODEC_DEFAULT, P.CODEC_STR, P.CODEC_BYTES, P.CODEC_INT, P.CODEC_JSON, P.CODEC_MSGPACK, P.CODEC_CUSTOM]
PUBLIC = [
    "format_score",
    "encode_member",
    "decode_member",
    "pack_command",
    "pack_zadd",
    "decode_items",
    "decode_scored",
    "json_dumps_canonical",
]


def _compiled_or_fail(config: pytest.Config) -> ModuleType:
    """Return ``redset._wire_c``; fail (never skip silently) when it is missing."""
    no_ext = bool(os.environ.get("REDSET_NO_EXTENSIONS"))
    try:
        no_ext = no_ext or bool(config.getoption("--no-c-extensions"))
    except ValueError:  # the option is not registered by this conftest
        pass
    if no_ext:
        pytest.skip("the compiled extension is disabled (REDSET_NO_EXTENSIONS / --no-c-extensions)")
    if _wire.compiled is None:
        pytest.fail(
            "redset._wire_c is not built: run `python setup.py build_ext --inplace`, "
            "or pass --no-c-extensions / set REDSET_NO_EXTENSIONS=1 to test pure Python only"
        )
    return _wire.compiled


@pytest.fixture(scope="module")
def C(pytestconfig: pytest.Config) -> ModuleType:
    return _compiled_or_fail(pytestconfig)


# ---------------------------------------------------------------------------
# Comparing outcomes


def outcome(fn: Callable[..., Any], *args: Any) -> Tuple[Any, ...]:
    """What a call did: its result, or everything that identifies its exception."""
    try:
        result = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome
        cause = exc.__cause__
        return (
            "raised",
            type(exc),
            str(exc),
            getattr(exc, "index", "<none>"),
            getattr(exc, "sent", "<none>"),
            type(cause),
            None if cause is None else str(cause),
            exc.__suppress_context__,
        )
    return ("returned", type(result), canon(result))


def canon(value: Any) -> Any:
    """A comparable form that tells 1 from True and -0.0 from 0.0, and NaN equals NaN."""
    if isinstance(value, list):
        return ("list", [canon(v) for v in value])
    if isinstance(value, tuple):
        return ("tuple", tuple(canon(v) for v in value))
    if isinstance(value, BaseException):
        return (type(value), str(value))
    return (type(value), repr(value))


def same(c_mod: ModuleType, name: str, *args: Any) -> Tuple[Any, ...]:
    expected = outcome(getattr(P, name), *args)
    got = outcome(getattr(c_mod, name), *args)
    assert got == expected, (name, args)
    return expected


# ---------------------------------------------------------------------------
# Strategies: scores


class IntLike:
    """An ``__index__`` type that is not an int (like numpy.int64)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


class BadIndex:
    def __index__(self) -> int:
        raise TypeError("no index today")


class IntSub(int):
    pass


class FloatSub(float):
    pass


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2**60


special_floats = st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-5, 1e16, 1e15 + 0.5, 9007199254740993.0,
     1.7976931348623157e308, math.inf, -math.inf, math.nan, 0.1, 1 / 3]
)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True), special_floats)
big_ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.sampled_from([2**53, 2**53 + 1, -(2**53), -(2**53) - 1, 2**63, -(2**63), 2**64 - 1, 2**64,
                     2**1023 * 2 - 1, 2**1024, -(2**1024)]),
)
scores = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    big_ints,
    floats,
    st.booleans(),
    st.none(),
    st.builds(decimal.Decimal, st.integers()),
    st.text(max_size=3),
    st.binary(max_size=3),
    big_ints.map(IntLike),
    st.just(BadIndex()),
    big_ints.map(IntSub),
    floats.map(FloatSub),
    st.sampled_from(list(Level)),
    st.just(object()),
)

# ---------------------------------------------------------------------------
# Strategies: members


any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates included
tricky_bytes = st.lists(
    st.sampled_from([b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"$3\r\n", b"*1", b"a", b"\xe2\x82\xac"]),
    max_size=6,
).map(b"".join)
raw_bytes = st.one_of(st.binary(max_size=24), tricky_bytes)


class StrSub(str):
    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        return b"overridden"


class BytesSub(bytes):
    pass


plain_members = st.one_of(
    raw_bytes,
    any_text,
    st.sampled_from(["\ud800", "a\udfffb", "\udc80\ud83d"]),
    big_ints,
    floats,
    st.booleans(),
    st.none(),
    raw_bytes.map(bytearray),
    raw_bytes.map(memoryview),
    any_text.map(StrSub),
    raw_bytes.map(BytesSub),
    big_ints.map(IntSub),
    floats.map(FloatSub),
    st.sampled_from(list(Level)),
    st.builds(decimal.Decimal, st.integers()),
    st.just(object()),
)

json_keys = st.one_of(any_text, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
# Named functions, not lambdas: hypothesis reads a lambda's source to check
# it, which goes wrong if the file changes while the suite runs.
def _json_containers(children: Any) -> Any:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(any_text, children, max_size=4),
        st.dictionaries(json_keys, children, max_size=3),
    )


def _msgpack_containers(children: Any) -> Any:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(any_text, st.integers(-5, 5)), children, max_size=4),
    )


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), big_ints, floats, any_text), _json_containers, max_leaves=12,
)
msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), big_ints, floats, any_text, st.binary(max_size=8)),
    _msgpack_containers,
    max_leaves=12,
)


def _dumps_identity(x: Any) -> Any:
    return x


def _dumps_repr(x: Any) -> str:
    return repr(x)


def _dumps_raises(x: Any) -> bytes:
    raise ValueError("cannot dump %r" % (x,))


def _dumps_runtime(x: Any) -> bytes:
    raise RuntimeError("serializer is broken")


def _dumps_object(x: Any) -> Any:
    return {"not": "bytes"}


CUSTOM_DUMPS = [_dumps_identity, _dumps_repr, _dumps_raises, _dumps_runtime, _dumps_object, None]


@st.composite
def codec_and_member(draw: st.DrawFn) -> Tuple[int, Any, Any]:
    codec = draw(st.sampled_from(CODECS + [99]))
    if codec == P.CODEC_JSON:
        member = draw(st.one_of(json_values, plain_members))
    elif codec == P.CODEC_MSGPACK:
        member = draw(st.one_of(msgpack_values, plain_members))
    else:
        member = draw(plain_members)
    dumps = draw(st.sampled_from(CUSTOM_DUMPS)) if codec >= P.CODEC_CUSTOM else None
    return codec, dumps, member


# ---------------------------------------------------------------------------
# The API itself


def test_same_public_names_and_signatures(C: ModuleType) -> None:
    assert sorted(C.__all__) == sorted(P.__all__)
    for name in P.__all__:
        assert hasattr(C, name), name
    for name in PUBLIC:
        assert name in P.__all__
        py_params = [(p.name, p.default, p.kind) for p in inspect.signature(getattr(P, name)).parameters.values()]
        c_params = [(p.name, p.default, p.kind) for p in inspect.signature(getattr(C, name)).parameters.values()]
        assert c_params == py_params, name
    for name in P.__all__:
        if name.startswith("CODEC_"):
            assert getattr(C, name) == getattr(P, name)


def test_switch_module_uses_the_compiled_twin(C: ModuleType) -> None:
    if _wire.NO_EXTENSIONS:
        pytest.skip("REDSET_NO_EXTENSIONS is set")
    assert _wire.impl is C
    assert _wire.USE_EXTENSIONS


# ---------------------------------------------------------------------------
# Encoders


@PROFILE
@given(score=scores, index=st.one_of(st.none(), st.integers(0, 10**6)), sent=st.integers(0, 10**6))
def test_format_score(C: ModuleType, score: Any, index: Optional[int], sent: int) -> None:
    same(C, "format_score", score, index, sent)


@PROFILE
@given(cm=codec_and_member(), index=st.one_of(st.none(), st.integers(0, 10**6)), sent=st.integers(0, 99))
def test_encode_member(C: ModuleType, cm: Tuple[int, Any, Any], index: Optional[int], sent: int) -> None:
    codec, dumps, member = cm
    same(C, "encode_member", codec, dumps, member, index, sent)


command_args = st.one_of(
    raw_bytes, any_text, big_ints, floats, st.booleans(), st.none(), raw_bytes.map(bytearray),
    raw_bytes.map(memoryview), any_text.map(StrSub), big_ints.map(IntSub),
)


@PROFILE
@given(args=st.one_of(st.lists(command_args, max_size=8), st.lists(command_args, max_size=8).map(tuple)))
def test_pack_command(C: ModuleType, args: Any) -> None:
    same(C, "pack_command", args)


def test_pack_command_bytes() -> None:
    assert P.pack_command(("ZCARD", b"k")) == b"*2\r\n$5\r\nZCARD\r\n$1\r\nk\r\n"


@st.composite
def zadd_batches(draw: st.DrawFn) -> Tuple[Any, ...]:
    """A chunk of 0..1000 items: a cheap regular bulk with drawn oddities spliced in."""
    codec = draw(st.sampled_from(CODECS))
    n = draw(st.one_of(st.integers(0, 5), st.integers(0, 1000)))
    items: List[Any]
    if codec in (P.CODEC_INT,):
        items = list(range(n))
    elif codec == P.CODEC_BYTES:
        items = [b"task:%d" % i for i in range(n)]
    elif codec == P.CODEC_JSON:
        items = [{"task": i, "url": "https://example.com/page/%d" % i, "priority": i % 10} for i in range(n)]
    elif codec == P.CODEC_MSGPACK:
        items = [{"task": i, "url": "https://example.com/page/%d" % i} for i in range(n)]
    else:
        items = ["task:%d" % i for i in range(n)]
    score_kind = draw(st.sampled_from(["int", "float", "mixed"]))
    batch_scores: List[Any] = [i if score_kind == "int" else i * 0.37 if score_kind == "float" else
                               (i if i % 2 else i + 0.5) for i in range(n)]
    member_strategy = {
        P.CODEC_JSON: st.one_of(json_values, plain_members),
        P.CODEC_MSGPACK: st.one_of(msgpack_values, plain_members),
    }.get(codec, plain_members)
    if n:
        for _ in range(draw(st.integers(0, 4))):
            i = draw(st.integers(0, n - 1))
            if draw(st.booleans()):
                items[i] = draw(member_strategy)
            if draw(st.booleans()):
                batch_scores[i] = draw(scores)
    # Mismatched lengths must fail alike too, now and then.
    if draw(st.integers(0, 20)) == 0:
        batch_scores = batch_scores[:-1] if batch_scores else [1]
    container = draw(st.sampled_from([list, tuple]))
    key = draw(st.one_of(st.just(b"queue"), raw_bytes, any_text, st.sampled_from(["mv", "mv-I", None])))
    if key == "mv":
        key = memoryview(b"k\x00ey")
    elif key == "mv-I":
        key = memoryview(b"abcdefgh").cast("I")  # len() 2, 8 bytes
    flags = draw(st.lists(st.sampled_from([b"NX", b"XX", b"GT", b"LT", b"CH", "NX", bytearray(b"CH"), 3]),
                          max_size=2))
    dumps = draw(st.sampled_from(CUSTOM_DUMPS)) if codec == P.CODEC_CUSTOM else None
    offset = draw(st.integers(0, 10**6))
    sent = draw(st.integers(0, 10**6))
    return key, tuple(flags), container(items), container(batch_scores), codec, dumps, offset, sent


@PROFILE
@given(batch=zadd_batches())
def test_pack_zadd(C: ModuleType, batch: Tuple[Any, ...]) -> None:
    result = same(C, "pack_zadd", *batch)
    key, flags, items, batch_scores, codec, dumps, offset, sent = batch
    if result[0] == "returned" and type(key) is bytes and all(type(f) is bytes for f in flags):
        # The bytes are a RESP array that hiredis parses back to the arguments.
        reader = hiredis.Reader()
        reader.feed(P.pack_zadd(*batch))
        parsed = reader.gets()
        assert parsed[:2 + len(flags)] == [b"ZADD", key, *flags]
        assert len(parsed) == 2 + len(flags) + 2 * len(items)
        assert reader.gets() is False


def test_pack_zadd_w1_bytes(C: ModuleType) -> None:
    items = ["task:%d" % i for i in range(1000)]
    expected = P.pack_zadd(b"q", (), items, list(range(1000)), P.CODEC_DEFAULT, None)
    assert C.pack_zadd(b"q", (), items, list(range(1000)), C.CODEC_DEFAULT, None) == expected
    assert expected.startswith(b"*2002\r\n$4\r\nZADD\r\n$1\r\nq\r\n$1\r\n0\r\n$6\r\ntask:0\r\n")


def test_pack_zadd_runtime_error_propagates(C: ModuleType) -> None:
    for mod in (P, C):
        with pytest.raises(RuntimeError, match="serializer is broken"):
            mod.pack_zadd(b"q", (), ["a"], [1], P.CODEC_CUSTOM, _dumps_runtime)


def test_pack_zadd_dumps_that_shrinks_the_list(C: ModuleType) -> None:
    def run(mod: ModuleType) -> Tuple[Any, ...]:
        items: List[Any] = [1, 2, 3, 4]

        def dumps(x: Any) -> bytes:
            items.clear()
            return b"%d" % x

        return outcome(mod.pack_zadd, b"q", (), items, [1, 2, 3, 4], P.CODEC_CUSTOM, dumps)

    assert run(C) == run(P)


# ---------------------------------------------------------------------------
# Canonical JSON, with and without orjson


@PROFILE
@given(value=json_values)
def test_json_canonical_same_bytes_with_and_without_orjson(C: ModuleType, value: Any) -> None:
    results = {}
    for mod in (P, C):
        for use_orjson in (True, False):
            results[mod.__name__, use_orjson] = outcome(mod.json_dumps_canonical, value, use_orjson)
    assert results[C.__name__, True] == results[P.__name__, True]
    assert results[C.__name__, False] == results[P.__name__, False]
    with_orjson, without = results[P.__name__, True], results[P.__name__, False]
    if with_orjson[0] == "returned" and without[0] == "returned":
        assert with_orjson == without
    if P_codec._orjson_safe(value, 0):
        # The rule's promise: where it lets orjson in, orjson agrees with the stdlib.
        try:
            fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            return  # lone surrogates: both paths refuse the value
        assert without == ("returned", bytes, canon(fast))


@PROFILE
@given(value=json_values)
def test_orjson_path_taken_only_when_safe(value: Any) -> None:
    calls: List[Any] = []

    class Spy:
        OPT_SORT_KEYS = orjson.OPT_SORT_KEYS
        JSONDecodeError = orjson.JSONDecodeError

        @staticmethod
        def dumps(obj: Any, option: int = 0) -> bytes:
            calls.append(obj)
            return orjson.dumps(obj, option=option)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(P_codec, "_orjson", Spy)
        outcome(P.json_dumps_canonical, value)
        outcome(P.json_dumps_canonical, value, False)
    assert len(calls) == (1 if P_codec._orjson_safe(value, 0) else 0)


UNSAFE_FOR_ORJSON = [
    1e-05,  # orjson writes 0.00001
    [1e16, 1e22, 0.1],
    {"a": 1.0, "b": [2.5e-7]},
    {1: "int key"},
    {2: "b", 1.5: "a"},
    2**64,
    -(2**63) - 1,
    [[[[0]]]] * 2,
    json.loads("[" * 230 + "]" * 230),  # deeper than orjson allows
    IntSub(5),
    {"k": StrSub("v")},
]


@pytest.mark.parametrize("value", UNSAFE_FOR_ORJSON, ids=range(len(UNSAFE_FOR_ORJSON)))
def test_json_canonical_is_the_stdlib_format(C: ModuleType, value: Any) -> None:
    stdlib = json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))
    for mod in (P, C):
        assert mod.json_dumps_canonical(value) == stdlib.encode("utf-8")
        assert mod.json_dumps_canonical(value, use_orjson=False) == stdlib.encode("utf-8")


# ---------------------------------------------------------------------------
# Decoders, fed by hiredis from RESP bytes split anywhere


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _score_bytes(score: float) -> bytes:
    return repr(score).encode()


def resp_reply(members: List[bytes], member_scores: List[float], shape: str) -> bytes:
    """RESP bytes of a ZPOPMIN-like reply in one of the shapes a server sends."""
    if shape == "resp2":  # ZPOPMIN key n, RESP2: flat member, score pairs
        body = b"".join(_bulk(m) + _bulk(_score_bytes(s)) for m, s in zip(members, member_scores))
        return b"*%d\r\n%s" % (2 * len(members), body)
    if shape == "resp3":  # ZPOPMIN key n, RESP3: [[member, double], ...]
        body = b"".join(b"*2\r\n" + _bulk(m) + b",%s\r\n" % _score_bytes(s) for m, s in zip(members, member_scores))
        return b"*%d\r\n%s" % (len(members), body)
    if shape == "resp3-flat":  # ZPOPMIN key (no count), RESP3: [member, double]
        body = b"".join(_bulk(m) + b",%s\r\n" % _score_bytes(s) for m, s in zip(members, member_scores))
        return b"*%d\r\n%s" % (2 * len(members), body)
    assert shape == "members"  # ZRANGE without scores, a pop script's reply
    return b"*%d\r\n%s" % (len(members), b"".join(_bulk(m) for m in members))


def parse_in_chunks(data: bytes, cuts: List[int], encoding: Optional[str]) -> Any:
    reader = hiredis.Reader(encoding=encoding, errors="surrogateescape") if encoding else hiredis.Reader()
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        if cut <= start:
            continue
        if start:
            assert reader.gets() is False  # incomplete so far
        reader.feed(data[start:cut])
        start = cut
    reply = reader.gets()
    assert reply is not False
    assert reader.gets() is False
    return reply


def member_bytes_for(codec: int) -> st.SearchStrategy[bytes]:
    """Members as stored by ``codec``, with some that fail to decode."""
    good = {
        P.CODEC_JSON: json_values.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass")),
        P.CODEC_MSGPACK: msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True) if _packs(v) else b"\xc1"),
        P.CODEC_INT: big_ints.map(lambda i: b"%d" % i),
    }.get(codec, st.text(max_size=10).map(str.encode))
    return st.one_of(good, raw_bytes, st.sampled_from([b"", b"NaN", b"1e400", b"  12 ", b"\xff", b"[1,", b"\x93\x01"]))


def _packs(value: Any) -> bool:
    try:
        msgpack.packb(value, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return False
    return True


def _loads_reverse(raw: bytes) -> bytes:
    return raw[::-1]


def _loads_picky(raw: bytes) -> Any:
    if raw[:1] == b"\xff":
        raise RuntimeError("loader crashed")  # must propagate, not become a failure
    if b"\r" in raw:
        raise ValueError("no CR please")
    return raw.decode("latin-1")


@st.composite
def popped_replies(draw: st.DrawFn) -> Tuple[Any, ...]:
    codec = draw(st.sampled_from(CODECS))
    n = draw(st.one_of(st.integers(0, 4), st.integers(0, 60)))
    members = draw(st.lists(member_bytes_for(codec), min_size=n, max_size=n))
    member_scores = draw(st.lists(st.one_of(st.floats(allow_nan=False), st.integers(-(2**53), 2**53).map(float)),
                                  min_size=n, max_size=n))
    shape = draw(st.sampled_from(["resp2", "resp3", "resp3-flat", "members"]))
    data = resp_reply(members, member_scores, shape)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=6))
    encoding = draw(st.sampled_from([None, None, None, "utf-8"]))
    loads = draw(st.sampled_from([_loads_reverse, _loads_picky, None])) if codec == P.CODEC_CUSTOM else None
    return codec, loads, shape, data, cuts, encoding


def check_decoders(c_mod: ModuleType, reply: Any, codec: int, loads: Any, with_scores: bool) -> None:
    results = []
    for mod in (P, c_mod):
        failures: List[Tuple[bytes, BaseException]] = []
        got = outcome(mod.decode_items, reply, codec, loads, failures, with_scores)
        results.append((got, [(raw, type(exc), str(exc)) for raw, exc in failures]))
    assert results[1] == results[0]
    if with_scores:
        same(c_mod, "decode_scored", reply)


@PROFILE
@given(case=popped_replies())
def test_decode_random_chunks(C: ModuleType, case: Tuple[Any, ...]) -> None:
    codec, loads, shape, data, cuts, encoding = case
    reply = parse_in_chunks(data, cuts, encoding)
    check_decoders(C, reply, codec, loads, shape != "members")


@settings(PROFILE, max_examples=max(10, PROFILE.max_examples // 10))
@given(case=popped_replies())
def test_decode_every_byte_boundary(C: ModuleType, case: Tuple[Any, ...]) -> None:
    codec, loads, shape, data, _, encoding = case
    data = data[:400]
    try:
        whole = parse_in_chunks(data, [], encoding)
    except AssertionError:
        return  # cut inside the reply: not a whole reply any more
    for cut in range(1, len(data)):
        assert canon(parse_in_chunks(data, [cut], encoding)) == canon(whole)
    assert canon(parse_in_chunks(data, list(range(1, len(data))), encoding)) == canon(whole)
    check_decoders(C, whole, codec, loads, shape != "members")


odd_raws = st.one_of(raw_bytes, any_text, st.none(), st.integers(), st.floats(), raw_bytes.map(bytearray))
odd_replies = st.one_of(
    st.none(),
    st.lists(odd_raws, max_size=6),
    st.lists(odd_raws, max_size=6).map(tuple),
    st.lists(st.lists(odd_raws, max_size=3), min_size=1, max_size=4),
    st.lists(st.one_of(st.lists(odd_raws, max_size=3), odd_raws), min_size=1, max_size=4),
    st.lists(st.tuples(odd_raws, odd_raws), min_size=1, max_size=4),
)


@PROFILE
@given(reply=odd_replies, codec=st.sampled_from(CODECS + [99]), with_scores=st.booleans())
def test_decode_odd_shapes(C: ModuleType, reply: Any, codec: int, with_scores: bool) -> None:
    loads = _loads_picky if codec >= P.CODEC_CUSTOM else None
    check_decoders(C, reply, codec, loads, with_scores)
    same(C, "decode_scored", reply)


@PROFILE
@given(codec=st.sampled_from(CODECS + [99]), raw=st.one_of(raw_bytes, any_text, st.none(), raw_bytes.map(bytearray)))
def test_decode_member(C: ModuleType, codec: int, raw: Any) -> None:
    loads = _loads_picky if codec >= P.CODEC_CUSTOM else None
    same(C, "decode_member", codec, loads, raw)


def test_decode_failures_are_recorded_and_skipped(C: ModuleType) -> None:
    reply = [b"ok", b"1", b"\xff", b"2", b"fine", b"3"]
    for mod in (P, C):
        failures: List[Tuple[bytes, BaseException]] = []
        assert mod.decode_items(reply, mod.CODEC_DEFAULT, None, failures, True) == ["ok", "fine"]
        assert [(raw, type(exc)) for raw, exc in failures] == [(b"\xff", UnicodeDecodeError)]


# ---------------------------------------------------------------------------
# PopReader: parsing and decoding pop replies straight from the bytes
#
# Both twins are fed the same byte stream, cut at the same places; after each
# feed, header() and every gets() until False must agree, down to the
# failures and the exception raised on protocol garbage.

POP_API = ["feed", "gets", "header", "pending"]

double_texts = st.one_of(
    st.floats(allow_nan=False).map(lambda f: repr(f).encode()),
    st.sampled_from([b"inf", b"-inf", b"nan", b"0", b"-0", b"1e+16", b"1.5"]),
)
bulk_score_texts = st.one_of(
    st.integers(-(2**53), 2**53).map(lambda i: b"%d" % i),
    st.floats(allow_nan=False).map(lambda f: repr(f).encode()),
    st.sampled_from([b"1", b"-0", b"inf", b"-inf", b"1e+16", b" 2 ", b"1_0"]),
)
bad_score_texts = st.sampled_from([b"", b"abc", b"0x10", b"1.5e", b"\xff", b"1\r\n2"])


def _pop_reply(members: List[bytes], scores: List[bytes], shape: str) -> bytes:
    if shape in ("resp2", "script"):  # flat member, score bulk strings
        body = b"".join(_bulk(m) + _bulk(s) for m, s in zip(members, scores))
        return b"*%d\r\n%s" % (2 * len(members), body)
    if shape == "resp3":  # [[member, double], ...]
        body = b"".join(b"*2\r\n" + _bulk(m) + b",%s\r\n" % s for m, s in zip(members, scores))
        return b"*%d\r\n%s" % (len(members), body)
    if shape == "resp3-flat":  # Redis 6.2 on RESP3: flat member, double
        body = b"".join(_bulk(m) + b",%s\r\n" % s for m, s in zip(members, scores))
        return b"*%d\r\n%s" % (2 * len(members), body)
    assert shape == "members"
    return b"*%d\r\n%s" % (len(members), b"".join(_bulk(m) for m in members))


GARBAGE = [
    b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n",  # a push
    b"|1\r\n+ttl\r\n:3\r\n*0\r\n",  # an attribute before the reply
    b"+OK\r\n",
    b":1\r\n",
    b"$-1\r\n",
    b"*-2\r\n",
    b"*x\r\n",
    b"*3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n",  # odd flat count with scores
    b"*1\r\n*3\r\n$1\r\na\r\n,1\r\n,2\r\n",  # not a pair
    b"*1\r\n*2\r\n:1\r\n,1\r\n",
    b"*2\r\n$1\r\na\r\n:1\r\n",
    b"*2\r\n$1\r\na\r\n#t\r\n",
    b"*2\r\n$-1\r\n$1\r\n1\r\n",
    b"*2\r\n$3\r\nabcXY$1\r\n1\r\n",  # bulk without CRLF
    b"*4\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\nb\r\n,2\r\n",  # flat, then a nested pair
    b"*1\r\n$1\r\na\r\n",
    b"_x\r\n",
    b"!x\r\nERR\r\n",
    b"*1234567890123456789\r\n",
    b"x garbage\r\n",
    b"\x00",
]


@st.composite
def pop_replies(draw: st.DrawFn, shape: str, codec: int) -> bytes:
    n = draw(st.one_of(st.integers(0, 3), st.integers(0, 30)))
    members = draw(st.lists(st.one_of(member_bytes_for(codec), st.sampled_from([b"a\r\nb", b"\x00", b"\r\n", b"$1\r\n"])),
                            min_size=n, max_size=n))
    if shape in ("resp2", "script"):
        texts = bulk_score_texts
    else:
        texts = double_texts
    if draw(st.integers(0, 20)) == 0:
        texts = st.one_of(texts, bad_score_texts.filter(lambda t: shape in ("resp2", "script") or b"\r\n" not in t))
    scores = draw(st.lists(texts, min_size=n, max_size=n))
    return _pop_reply(members, scores, shape)


@st.composite
def pop_streams(draw: st.DrawFn) -> Tuple[Any, ...]:
    """Several replies back to back, as one connection would deliver them."""
    codec = draw(st.sampled_from(CODECS))
    loads = draw(st.sampled_from([_loads_reverse, _loads_picky, None])) if codec == P.CODEC_CUSTOM else None
    with_scores = draw(st.booleans())
    kinds = ["resp2", "resp3", "resp3-flat", "script"] if with_scores else ["members"]
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        pick = draw(st.integers(0, 19))
        if pick < 13:
            parts.append(draw(pop_replies(draw(st.sampled_from(kinds)), codec)))
        elif pick < 15:
            parts.append(draw(st.sampled_from([b"*0\r\n", b"*-1\r\n", b"_\r\n"])))
        elif pick < 17:
            message = draw(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
            parts.append(draw(st.sampled_from([b"-ERR %s\r\n" % message, b"!%d\r\nERR %s\r\n" % (len(message) + 4, message)])))
        else:
            parts.append(draw(st.sampled_from(GARBAGE)))
    data = b"".join(parts)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=8))
    use_raw = with_scores and draw(st.booleans())
    return codec, loads, with_scores, data, cuts, use_raw


def _chunks(data: bytes, cuts: List[int]) -> List[bytes]:
    bounds = [0] + sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def run_pop_reader(mod: ModuleType, codec: int, loads: Any, with_scores: bool, chunks: List[bytes],
                   use_raw: bool, feed_type: Callable[[bytes], Any] = bytes) -> List[Any]:
    """Feed the chunks; record header() after each feed and every gets() outcome."""
    reader = mod.PopReader(codec, loads, with_scores)
    events: List[Any] = []
    for chunk in chunks:
        reader.feed(feed_type(chunk))
        events.append(("header", reader.header()))
        while True:
            failures: List[Tuple[bytes, BaseException]] = []
            raw: Optional[List[Tuple[bytes, float]]] = [] if use_raw else None
            got = outcome(reader.gets, failures, raw)
            if got[0] == "returned" and got[1] is mod.ErrorReply:  # each twin has its own class
                got = ("returned", "ErrorReply", got[2][1])
            events.append(("gets", got, [(r, type(e), str(e)) for r, e in failures],
                           None if raw is None else canon([tuple(p) for p in raw])))
            if got[0] == "raised":
                return events  # a broken stream: the caller discards the reader
            if got[1] is bool:
                break
            events.append(("header", reader.header()))
        events.append(("pending", reader.pending()))
    return events


def _check_headers(events: List[Any]) -> None:
    """A header() >= 0 is the exact member count of the reply gets() returns next."""
    announced = -1
    for event in events:
        if event[0] == "header":
            if announced < 0:
                announced = event[1]
            else:
                assert event[1] in (announced, -1) or event[1] == announced
        elif event[0] == "gets" and event[1][0] == "returned" and event[1][1] is not bool:
            got = event[1]
            if announced >= 0 and got[1] is list:
                count = len(got[2][1]) + len(event[2]) if event[3] is None else len(event[3][1])
                assert count == announced
            announced = -1


def check_pop_readers(c_mod: ModuleType, codec: int, loads: Any, with_scores: bool, data: bytes,
                      cuts: List[int], use_raw: bool) -> List[Any]:
    chunks = _chunks(data, cuts)
    expected = run_pop_reader(P, codec, loads, with_scores, chunks, use_raw)
    assert run_pop_reader(c_mod, codec, loads, with_scores, chunks, use_raw) == expected
    _check_headers(expected)
    return expected


def test_pop_reader_api(C: ModuleType) -> None:
    for name in POP_API:
        py_params = [(p.name, p.default, p.kind)
                     for p in inspect.signature(getattr(P.PopReader, name)).parameters.values()]
        c_params = [(p.name, p.default, p.kind)
                    for p in inspect.signature(getattr(C.PopReader, name)).parameters.values()]
        assert c_params == py_params, name
    assert issubclass(C.ErrorReply, str) and issubclass(P.ErrorReply, str)


@PROFILE
@given(case=pop_streams())
def test_pop_reader_random_chunks(C: ModuleType, case: Tuple[Any, ...]) -> None:
    codec, loads, with_scores, data, cuts, use_raw = case
    events = check_pop_readers(C, codec, loads, with_scores, data, cuts, use_raw)
    # Fed whole, it gives the same replies as fed in pieces.
    whole = [e for e in check_pop_readers(C, codec, loads, with_scores, data, [], use_raw) if e[0] == "gets"]
    pieces = [e for e in events if e[0] == "gets"]
    assert [e for e in whole if e[1][1] is not bool] == [e for e in pieces if e[1][1] is not bool]


@settings(PROFILE, max_examples=max(10, PROFILE.max_examples // 10))
@given(case=pop_streams())
def test_pop_reader_every_byte_boundary(C: ModuleType, case: Tuple[Any, ...]) -> None:
    codec, loads, with_scores, data, _, use_raw = case
    data = data[:300]
    whole = [e for e in check_pop_readers(C, codec, loads, with_scores, data, [], use_raw)
             if e[0] == "gets" and e[1][1] is not bool]
    for cut in range(1, len(data)):
        events = check_pop_readers(C, codec, loads, with_scores, data, [cut], use_raw)
        assert [e for e in events if e[0] == "gets" and e[1][1] is not bool] == whole
    events = check_pop_readers(C, codec, loads, with_scores, data, list(range(1, len(data))), use_raw)
    assert [e for e in events if e[0] == "gets" and e[1][1] is not bool] == whole


@PROFILE
@given(case=popped_replies())
def test_pop_reader_matches_decode_items(C: ModuleType, case: Tuple[Any, ...]) -> None:
    """What PopReader returns is what hiredis plus decode_items returned before."""
    codec, loads, shape, data, cuts, _ = case
    with_scores = shape != "members"
    reply = parse_in_chunks(data, [], None)
    for mod in (P, C):
        expected_failures: List[Tuple[bytes, BaseException]] = []
        expected = outcome(mod.decode_items, reply, codec, loads, expected_failures, with_scores)
        reader = mod.PopReader(codec, loads, with_scores)
        for chunk in _chunks(data, cuts):
            reader.feed(memoryview(chunk))
        failures: List[Tuple[bytes, BaseException]] = []
        assert outcome(reader.gets, failures) == expected
        assert [(r, type(e), str(e)) for r, e in failures] == [(r, type(e), str(e)) for r, e in expected_failures]
        assert reader.gets([]) is False and not reader.pending()
        if with_scores:
            raw: List[Tuple[bytes, float]] = []
            reader.feed(bytearray(data))
            assert reader.gets([], raw) == []
            assert canon(raw) == canon(mod.decode_scored(reply))


@pytest.mark.parametrize("feed_type", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_pop_reader_shapes(C: ModuleType, feed_type: Callable[[bytes], Any]) -> None:
    stream = (
        b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$2\r\n-0\r\n"  # RESP2
        b"*2\r\n*2\r\n$1\r\nc\r\n,inf\r\n*2\r\n$1\r\n\xff\r\n,-inf\r\n"  # RESP3
        b"*2\r\n$1\r\nd\r\n,nan\r\n"  # RESP3 on Redis 6.2
        b"*0\r\n*-1\r\n_\r\n-ERR wrong\r\n!9\r\nNOSCRIPT!\r\n"
    )
    for mod in (P, C):
        reader = mod.PopReader(mod.CODEC_DEFAULT, None, True)
        reader.feed(feed_type(stream))
        assert reader.header() == 2
        failures: List[Tuple[bytes, BaseException]] = []
        assert reader.gets(failures) == ["a", "b"]
        assert reader.gets(failures) == ["c"] and failures[0][0] == b"\xff"
        raw: List[Tuple[bytes, float]] = []
        assert reader.gets([], raw) == [] and raw[0][0] == b"d" and math.isnan(raw[0][1])
        assert [reader.gets([]) for _ in range(3)] == [[], [], []]
        err = reader.gets([])
        assert type(err) is mod.ErrorReply and err == "ERR wrong"
        assert reader.gets([]) == "NOSCRIPT!" and reader.gets([]) is False
        assert not reader.pending()


def test_pop_reader_garbage_raises_invalid_response(C: ModuleType) -> None:
    from redis.exceptions import InvalidResponse

    for data in GARBAGE:
        for mod in (P, C):
            reader = mod.PopReader(mod.CODEC_DEFAULT, None, True)
            reader.feed(data)
            with pytest.raises(InvalidResponse):
                assert reader.gets([]) is None, data


def test_pop_reader_loader_runtime_error_propagates(C: ModuleType) -> None:
    data = _pop_reply([b"ok", b"\xffboom", b"fine"], [b"1", b"2", b"3"], "resp2") + b"*0\r\n"
    for mod in (P, C):
        reader = mod.PopReader(mod.CODEC_CUSTOM, _loads_picky, True)
        reader.feed(data)
        with pytest.raises(RuntimeError, match="loader crashed"):
            reader.gets([])
        assert reader.gets([]) == []  # the reply was consumed: the stream stays in step


def test_pop_reader_raw_needs_scores(C: ModuleType) -> None:
    for mod in (P, C):
        with pytest.raises(ValueError):
            mod.PopReader(mod.CODEC_DEFAULT, None, False).gets([], [])


def test_only_the_compiled_pop_reader_is_native(C: ModuleType) -> None:
    # The transports read pops from the socket by default only with a reader
    # that parses in C; the pure one is the reference (REDSET_SOCKET_POPS=1).
    assert C.NATIVE_POP_READER is True and P.NATIVE_POP_READER is False
