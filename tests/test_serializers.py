"""Built-in codecs, through real sets."""
from __future__ import annotations

import pytest

from redset import SortedSet
from redset.serializers import (
    BytesSerializer,
    IntSerializer,
    JSONSerializer,
    MsgpackSerializer,
    StrSerializer,
)


@pytest.mark.parametrize(
    "serializer, items",
    [
        (StrSerializer(), ["a", "\u00e9\u00e8", "x\r\ny", ""]),
        (BytesSerializer(), [b"\x00\xff", b"\r\n", b"plain"]),
        (IntSerializer(), [0, -5, 2**70]),
        (JSONSerializer(), [{"b": 1, "a": [1, 2.5, None]}, "s", 3, [True, {"k": "\u00e9"}]]),
        (JSONSerializer(use_orjson=False), [{"b": 1, "a": [1, 2.5, None]}, "s"]),
        (MsgpackSerializer(), [{"b": 1, "a": [1, 2.5, None]}, b"bin", "s", 2**40]),
    ],
    ids=["str", "bytes", "int", "json", "json-stdlib", "msgpack"],
)
def test_roundtrip(r, serializer, items):
    s = SortedSet(r, "q", serializer=serializer)
    assert s.add_many(items, range(len(items))) == len(items)
    assert s.peek() == items[0]
    for item in items:
        assert item in s
    assert s.take(len(items)) == items


def test_canonical_json_dedups_equal_content(r):
    s = SortedSet(r, "q", serializer=JSONSerializer())
    assert s.add_many([{"a": 1, "b": 2}, {"b": 2, "a": 1}]) == 1
    assert r.zrange("q", 0, -1) == [b'{"a":1,"b":2}']
    other = SortedSet(r, "q", serializer=JSONSerializer(use_orjson=False))
    assert other.add_many([{"b": 2, "a": 1}]) == 0


@pytest.mark.parametrize(
    "serializer, bad",
    [
        (StrSerializer(), b"bytes"),
        (BytesSerializer(), "str"),
        (IntSerializer(), True),
        (IntSerializer(), "1"),
        (JSONSerializer(), float("nan")),
        (JSONSerializer(), object()),
        (MsgpackSerializer(), object()),
    ],
)
def test_codecs_reject_what_they_cannot_store(r, serializer, bad):
    s = SortedSet(r, "q", serializer=serializer)
    with pytest.raises(TypeError, match="item 0"):
        s.add_many([bad], [1])
    assert len(s) == 0


def test_serializers_work_standalone():
    assert JSONSerializer().dumps({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    assert JSONSerializer().loads(b'{"a":2}') == {"a": 2}
    assert IntSerializer().loads("12") == 12
    assert StrSerializer().dumps("x") == b"x"


def test_binary_custom_serializer_can_ask_for_bytes(r):
    class Raw:
        loads_bytes = True

        def dumps(self, item):
            return item

        def loads(self, raw):
            assert type(raw) is bytes
            return raw[::-1]

    s = SortedSet(r, "q", serializer=Raw())
    s.add(b"\xff\x00ab", 1)
    assert s.pop() == b"ba\x00\xff"


def test_non_utf8_member_fails_to_load_for_str_serializers(r):
    import json as _json

    class J:
        def dumps(self, item):
            return _json.dumps(item)

        def loads(self, s):
            return _json.loads(s)

    s = SortedSet(r, "q", serializer=J(), on_decode_error="raise")
    r.zadd("q", {b"\xff": 1, b"[1]": 2})
    from redset.exceptions import DeserializationError

    with pytest.raises(DeserializationError) as info:
        s.take(5)
    assert info.value.items == [[1]]
    assert info.value.failures[0][0] == b"\xff"
