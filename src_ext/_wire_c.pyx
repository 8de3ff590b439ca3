# cython: language_level=3
"""Compiled batch encoder and decoder (the twin of ``redset._wire_py``).

Same names, same signatures, byte-identical output and identical exceptions
as the pure-Python module; only :mod:`redset._wire` imports either. Bytes in,
bytes out: nothing here knows about sockets.

The speed comes from framing a whole ``ZADD`` into one C buffer and from
fast paths for exact ``str``/``bytes``/``int``/``float`` values. Anything
else takes a slow path that makes the very calls the Python twin makes
(``PyNumber_Float`` for ``float()``, ``PyNumber_Index`` for
``operator.index``, ...), so the two cannot drift apart on odd inputs.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_Clear
from cpython.ref cimport Py_XDECREF
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.number cimport PyNumber_Float, PyNumber_Index, PyNumber_Long, PyNumber_Remainder
from cpython.object cimport PyObject, PyObject_GetItem
from cpython.dict cimport PyDict_Next
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8, PyUnicode_Format
from libc.math cimport fabs, signbit
from libc.string cimport memchr, memcmp, memcpy, memmove, strlen
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.float cimport PyFloat_FromDouble

cdef inline int _decode_borrowed(list out, int codec, object loads, object failures, PyObject *raw) except -1:
    # The common case (valid UTF-8 bytes to str) on a borrowed pointer, with
    # no try block and no reference counting of the raw member.
    cdef PyObject *value
    if (codec == C_DEFAULT or codec == C_STR) and _type_of(raw) is &PyBytes_Type:
        value = _str_of(_bytes_data(raw), _bytes_size(raw))
        if value is not NULL:
            try:
                out.append(<object>value)
            finally:
                Py_XDECREF(value)
            return 0
        PyErr_Clear()  # not UTF-8: redone under try, where it becomes a failure
    raw_ref = <object>raw  # hold it: what follows may run Python code
    return _decode_into(out, codec, loads, failures, raw_ref)


cdef extern from *:
    """
    static PyObject *__redset_decode_utf8(const char *s, Py_ssize_t n) {
        PyObject *r = PyUnicode_DecodeUTF8(s, n, NULL);
        if (r == NULL) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return r;
    }
    /* True if the n bytes at s are all ASCII: words (overlapping at the
       end) rather than bytes; nothing outside s[0:n] is read. */
    static inline int __redset_is_ascii(const char *s, Py_ssize_t n) {
        uint64_t acc = 0, w;
        uint32_t a = 0, b = 0;
        Py_ssize_t i;
        if (n >= 8) {
            for (i = 0; i + 8 <= n; i += 8) {
                memcpy(&w, s + i, 8);
                acc |= w;
            }
            memcpy(&w, s + n - 8, 8);
            return !((acc | w) & 0x8080808080808080ULL);
        }
        if (n >= 4) {
            memcpy(&a, s, 4);
            memcpy(&b, s + n - 4, 4);
        } else if (n > 0) {
            a = (unsigned char)s[0] | (unsigned char)s[n / 2] | (unsigned char)s[n - 1];
        }
        return !((a | b) & 0x80808080U);
    }
    /* PyUnicode_DecodeUTF8(s, n, NULL), with the common case done here: an
       ASCII text of 2 or more bytes becomes the very object the decoder
       makes (a compact ASCII str: PyUnicode_New(n, 127), then the bytes).
       Shorter texts (the decoder's cached singletons) and anything else go
       to the decoder itself. */
    static PyObject *__redset_str_of(const char *s, Py_ssize_t n) {
        if (n > 1 && __redset_is_ascii(s, n)) {
            PyObject *u = PyUnicode_New(n, 127);
            if (u != NULL) {
                char *d = (char *)PyUnicode_1BYTE_DATA(u);
                uint64_t x, y;
                if (n <= 16 && n >= 8) {  /* two overlapping words */
                    memcpy(&x, s, 8);
                    memcpy(&y, s + n - 8, 8);
                    memcpy(d, &x, 8);
                    memcpy(d + n - 8, &y, 8);
                } else {
                    memcpy(d, s, (size_t)n);
                }
            }
            return u;
        }
        return PyUnicode_DecodeUTF8(s, n, NULL);
    }
    /* The end of the bulk string "$<1-18 digits>" CRLF "<data>" CRLF at q
       if it is all here, its data at *data; -1 otherwise (not all here,
       or not in that form: the checked path decides). */
    static inline Py_ssize_t __redset_bulk_fast(const char *buf, Py_ssize_t q, Py_ssize_t size, Py_ssize_t *data) {
        Py_ssize_t v, d0 = q + 1, limit;
        unsigned char c;
        if (q + 4 > size || buf[q] != '$')
            return -1;
        v = (unsigned char)(buf[d0] - '0');
        if (v > 9)
            return -1;
        q = d0 + 1;
        limit = d0 + 18;
        if (limit > size)
            limit = size;
        while (q < limit && (c = (unsigned char)(buf[q] - '0')) <= 9) {
            v = v * 10 + c;
            q++;
        }
        if (q + 1 >= size || buf[q] != 13 || buf[q + 1] != 10)
            return -1;
        *data = q + 2;
        q += 2 + v;
        if (q + 2 > size || buf[q] != 13 || buf[q + 1] != 10)
            return -1;
        return q + 2;
    }
    /* Scan the elements of a pop reply from *pos on, as long as each is all
       here and in the plain forms that the checked path (PopReader's
       _scan_more) accepts as they are: "*2" CRLF when nested, a bulk
       string, then with scores a bulk string or ",<text>" CRLF. Each
       member's data offset (from body) and length go to members[2k] and
       members[2k + 1] (room for max); *pos moves past them; returns how
       many. It stops, without a judgement, at the first element that is
       not so: the checked path looks at that one. */
    static const char __redset_pair_head[4] = {'*', '2', 13, 10};
    static Py_ssize_t __redset_scan_fast(const char *buf, Py_ssize_t size, Py_ssize_t *pos,
                                         Py_ssize_t max, int nested, int with_scores,
                                         Py_ssize_t body, Py_ssize_t *members) {
        Py_ssize_t k = 0, q = *pos, p, r, data, member;
        while (k < max) {
            p = q;
            if (nested) {
                if (p + 4 > size || memcmp(buf + p, __redset_pair_head, 4) != 0)
                    break;
                p += 4;
            }
            p = __redset_bulk_fast(buf, p, size, &member);
            if (p < 0)
                break;
            members[2 * k] = member - body;
            members[2 * k + 1] = p - 2 - member;
            if (with_scores) {
                if (p >= size)
                    break;
                if (buf[p] == ',') {
                    r = p + 1;
    #if defined(__GNUC__) && PY_LITTLE_ENDIAN
                    if (r + 8 <= size) {
                        /* the first CR among the next 8 bytes, if any: the
                           lowest byte the zero-byte test flags is exact */
                        uint64_t w, t;
                        memcpy(&w, buf + r, 8);
                        w ^= 0x0D0D0D0D0D0D0D0DULL;
                        t = (w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL;
                        if (t)
                            r += (Py_ssize_t)(__builtin_ctzll(t) >> 3);
                        else
                            for (r += 8; r < size && buf[r] != 13; r++) {}
                    } else
    #endif
                    {
                        while (r < size && buf[r] != 13)
                            r++;
                    }
                    if (r + 1 >= size || buf[r + 1] != 10)
                        break;
                    p = r + 2;
                } else {
                    p = __redset_bulk_fast(buf, p, size, &data);
                    if (p < 0)
                        break;
                }
            }
            q = p;
            k++;
        }
        *pos = q;
        return k;
    }
    """
    # PyUnicode_DecodeUTF8, but None (exception cleared) on invalid UTF-8,
    # so the decode loop's fast path needs no try block.
    object _decode_utf8_or_none "__redset_decode_utf8"(const char *s, Py_ssize_t n)
    # New reference, or NULL with UnicodeDecodeError (or MemoryError) set.
    PyObject *_str_of "__redset_str_of"(const char *s, Py_ssize_t n) noexcept
    # A list of n empty (NULL) slots; a slot filled steals the reference;
    # the size cut to the slots filled before anything else sees the list.
    list _new_list "PyList_New"(Py_ssize_t n)
    void _list_set "PyList_SET_ITEM"(object l, Py_ssize_t i, PyObject *value) noexcept
    void _set_size "Py_SET_SIZE"(object l, Py_ssize_t n) noexcept
    Py_ssize_t _scan_fast "__redset_scan_fast"(const char *buf, Py_ssize_t size, Py_ssize_t *pos,
                                              Py_ssize_t max, int nested, int with_scores,
                                              Py_ssize_t body, Py_ssize_t *members) noexcept

import json as _json

from redis.exceptions import InvalidResponse

from redset.exceptions import InvalidItemError, InvalidScoreError, InvalidScoreValueError

try:  # optional fast JSON
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

try:  # optional msgpack codec
    import msgpack as _msgpack
except ImportError:  # pragma: no cover
    _msgpack = None

__all__ = [
    "CODEC_DEFAULT",
    "CODEC_STR",
    "CODEC_BYTES",
    "CODEC_INT",
    "CODEC_JSON",
    "CODEC_MSGPACK",
    "CODEC_CUSTOM",
    "format_score",
    "encode_member",
    "decode_member",
    "pack_command",
    "pack_zadd",
    "decode_items",
    "decode_scored",
    "json_dumps_canonical",
    "ErrorReply",
    "PopReader",
    "NATIVE_POP_READER",
    "LEASE_SLOTS",
    "whole_batch",
]

CODEC_DEFAULT = 0
CODEC_STR = 1
CODEC_BYTES = 2
CODEC_INT = 3
CODEC_JSON = 4
CODEC_MSGPACK = 5
CODEC_CUSTOM = 6

cdef enum:
    C_DEFAULT = 0
    C_STR = 1
    C_BYTES = 2
    C_INT = 3
    C_JSON = 4
    C_MSGPACK = 5
    C_CUSTOM = 6

# Integers up to 2**53 are exact doubles: send their digits.
cdef long long EXACT_INT = 9007199254740992
cdef int ORJSON_MAX_DEPTH = 200
# Below 1e16, repr() of an integral float is its digits plus ".0".
cdef double INTEGRAL_FLOAT_LIMIT = 1e16

# Messages are built with PyUnicode_Format (str % args, as in the twin), not
# with Cython's own formatting of literals, so odd values format alike.
cdef object _FMT_ITEM = "item %d"
cdef object _FMT_NAN = "score of %s is NaN, which a sorted set cannot store"
cdef object _FMT_SCORE_TYPE = "score of %s must be an int or float, not %s"
cdef object _FMT_BIG = "score of %s is an integer beyond the range of a double"
cdef object _FMT_ITEM_EXC = "%s could not be serialized: %s: %s"
cdef object _FMT_ITEM_TYPE = "%s could not be serialized: %s is not accepted by this serializer"
cdef object _FMT_ARG = "command argument must be bytes, str, int or float, not %s"

cdef object _PCT_D = b"%d"
cdef object _bytes_type = bytes  # called, not cimported: bytes(x) honours __bytes__
cdef object _bytes_like = (bytes, bytearray, memoryview)
cdef object _str_or_bytes = (str, bytes)
cdef object _hasattr = hasattr

cdef object _orjson_dumps = None
cdef object _orjson_loads = None
cdef object _orjson_decode_error = None
cdef object _orjson_sort_keys = None
if _orjson is not None:
    _orjson_dumps = _orjson.dumps
    _orjson_loads = _orjson.loads
    _orjson_decode_error = _orjson.JSONDecodeError
    _orjson_sort_keys = _orjson.OPT_SORT_KEYS

cdef object _msgpack_packb = None
cdef object _msgpack_unpackb = None
cdef object _msgpack_packer = None
if _msgpack is not None:
    _msgpack_packb = _msgpack.packb
    _msgpack_unpackb = _msgpack.unpackb
    _msgpack_packer = _msgpack.Packer

cdef object _stdlib_json_encode = _json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode
cdef object _stdlib_json_loads = _json.loads

cdef str _NO_MSGPACK = "the msgpack codec needs the msgpack package: pip install redset[msgpack]"


# ---------------------------------------------------------------------------
# The write buffer


cdef const char *_DIGIT_PAIRS = (
    b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    b"8081828384858687888990919293949596979899"
)


cdef inline Py_ssize_t _digits2(char *end, long long value) noexcept:
    """Write ``value`` in decimal ending just before ``end``; return its length.

    Two digits per division: this runs for every score and every length.
    """
    cdef unsigned long long u, r
    cdef char *p = end
    if value < 0:
        u = <unsigned long long>(-(value + 1)) + 1
    else:
        u = <unsigned long long>value
    while u >= 100:
        r = (u % 100) * 2
        u //= 100
        p -= 2
        p[0] = _DIGIT_PAIRS[r]
        p[1] = _DIGIT_PAIRS[r + 1]
    if u >= 10:
        p -= 2
        p[0] = _DIGIT_PAIRS[u * 2]
        p[1] = _DIGIT_PAIRS[u * 2 + 1]
    else:
        p -= 1
        p[0] = <char>(48 + u)
    if value < 0:
        p -= 1
        p[0] = b'-'
    return end - p


cdef inline void _copy(char *dst, const char *src, Py_ssize_t n) noexcept:
    # Members and scores are mostly a few bytes: fixed-size copies compile to
    # plain moves, where memcpy() would be a call through the PLT.
    if n > 16:
        memcpy(dst, src, <size_t>n)
    elif n >= 8:
        memcpy(dst, src, 8)
        memcpy(dst + n - 8, src + n - 8, 8)
    elif n >= 4:
        memcpy(dst, src, 4)
        memcpy(dst + n - 4, src + n - 4, 4)
    else:
        while n > 0:
            n -= 1
            dst[n] = src[n]


cdef inline char *_put_bulk(char *p, const char *data, Py_ssize_t n) noexcept:
    """Write ``$<n>\r\n<data>\r\n`` at ``p`` (room checked by the caller); return the end."""
    cdef char tmp[24]
    cdef Py_ssize_t k
    p[0] = b'$'
    if n < 10:
        p[1] = <char>(48 + n)
        p += 2
    else:
        k = _digits2(tmp + 24, n)
        _copy(p + 1, tmp + 24 - k, k)
        p += k + 1
    p[0] = b'\r'
    p[1] = b'\n'
    _copy(p + 2, data, n)
    p += n + 2
    p[0] = b'\r'
    p[1] = b'\n'
    return p + 2


@cython.final
cdef class _WriteBuffer:

    def __cinit__(self, Py_ssize_t size_hint=256):
        if size_hint < 64:
            size_hint = 64
        self._buf = <char *>PyMem_Malloc(<size_t>size_hint)
        if self._buf is NULL:
            raise MemoryError()
        self._size = size_hint
        self._len = 0

    def __dealloc__(self):
        if self._buf is not NULL:
            PyMem_Free(self._buf)
            self._buf = NULL

    cdef int _grow(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t new_size = self._size * 2
        cdef char *new_buf
        if new_size < self._len + extra:
            new_size = self._len + extra
        new_buf = <char *>PyMem_Realloc(self._buf, <size_t>new_size)
        if new_buf is NULL:
            raise MemoryError()
        self._buf = new_buf
        self._size = new_size
        return 0

    cdef int write_raw(self, const char *data, Py_ssize_t n) except -1:
        if self._len + n > self._size:
            self._grow(n)
        memcpy(self._buf + self._len, data, <size_t>n)
        self._len += n
        return 0

    cdef int write_header(self, char kind, Py_ssize_t n) except -1:
        # "*3\r\n" or "$5\r\n"
        cdef char tmp[24]
        cdef Py_ssize_t k = _digits2(tmp + 24, n)
        cdef char *p
        if self._len + k + 3 > self._size:
            self._grow(k + 3)
        p = self._buf + self._len
        p[0] = kind
        memcpy(p + 1, tmp + 24 - k, <size_t>k)
        p[k + 1] = b'\r'
        p[k + 2] = b'\n'
        self._len += k + 3
        return 0

    cdef int write_bulk(self, const char *data, Py_ssize_t n) except -1:
        # "$5\r\nhello\r\n"
        if self._len + n + 25 > self._size:
            self._grow(n + 25)
        self._len = _put_bulk(self._buf + self._len, data, n) - self._buf
        return 0

    cdef int write_bulk_bytes(self, bytes data) except -1:
        return self.write_bulk(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    cdef int write_bulk_llong(self, long long value) except -1:
        cdef char tmp[24]
        cdef Py_ssize_t k = _digits2(tmp + 24, value)
        return self.write_bulk(tmp + 24 - k, k)

    cdef int write_bulk_double(self, double value) except -1:
        # Exactly repr(value); the caller has rejected NaN.
        cdef char tmp[32]
        cdef Py_ssize_t k
        cdef char *s
        if fabs(value) < INTEGRAL_FLOAT_LIMIT and value == <double>(<long long>value):
            # Integral and below 1e16: the shortest round-trip digits are the
            # integer's own, so repr() is "<digits>.0" ("-0.0" keeps its sign).
            tmp[30] = b'.'
            tmp[31] = b'0'
            k = _digits2(tmp + 30, <long long>value)
            if signbit(value) and value == 0.0:
                tmp[28] = b'-'
                k = 2
            return self.write_bulk(tmp + 30 - k, k + 2)
        s = PyOS_double_to_string(value, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
        try:
            self.write_bulk(s, <Py_ssize_t>strlen(s))
        finally:
            PyMem_Free(s)
        return 0

    cdef bytes to_bytes(self):
        return PyBytes_FromStringAndSize(self._buf, self._len)


# ---------------------------------------------------------------------------
# Small helpers mirroring the Python twin


cdef inline str _describe(object index):
    if index is None:
        return "item"
    return PyUnicode_Format(_FMT_ITEM, index)


cdef int _codec_id(object codec) except -1:
    # The twin compares with ==, so anything equal to 0..5 is that codec and
    # everything else is CODEC_CUSTOM.
    cdef int overflow = 0
    cdef long long v
    cdef int k
    if type(codec) is int:
        v = PyLong_AsLongLongAndOverflow(codec, &overflow)
        if overflow == 0 and 0 <= v <= 5:
            return <int>v
        return C_CUSTOM
    for k in range(6):
        if codec == k:
            return k
    return C_CUSTOM


cdef bytes _int_bytes(object value):
    """``b"%d" % value`` for an exact int."""
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
    cdef char tmp[24]
    cdef Py_ssize_t k
    if overflow == 0:
        k = _digits2(tmp + 24, v)
        return PyBytes_FromStringAndSize(tmp + 24 - k, k)
    return PyNumber_Remainder(_PCT_D, value)


cdef bytes _float_bytes(double value):
    """``repr(value).encode()``."""
    cdef char *s = PyOS_double_to_string(value, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        return PyBytes_FromStringAndSize(s, <Py_ssize_t>strlen(s))
    finally:
        PyMem_Free(s)


cdef inline object _item_at(object seq, Py_ssize_t i, int kind):
    # kind: 1 exact list, 2 exact tuple, 0 anything else (seq[i], as the twin).
    if kind == 1:
        if i < PyList_GET_SIZE(seq):  # a dumps() may have shrunk it meanwhile
            return <object>PyList_GET_ITEM(seq, i)
    elif kind == 2:
        return <object>PyTuple_GET_ITEM(seq, i)
    return PyObject_GetItem(seq, i)


cdef inline int _seq_kind(object seq) noexcept:
    if type(seq) is list:
        return 1
    if type(seq) is tuple:
        return 2
    return 0


# ---------------------------------------------------------------------------
# Scores


cdef bytes _format_score(object score, object index, object sent):
    cdef int overflow = 0
    cdef long long v
    cdef double d
    tp = type(score)
    if tp is int:
        v = PyLong_AsLongLongAndOverflow(score, &overflow)
        if overflow == 0 and -EXACT_INT <= v <= EXACT_INT:
            return _int_bytes(score)
        return _format_big_int(score, index, sent)
    if tp is float:
        d = PyFloat_AS_DOUBLE(score)
        if d != d:
            raise InvalidScoreValueError(PyUnicode_Format(_FMT_NAN, _describe(index)), index, sent)
        return _float_bytes(d)
    if tp is bool or score is None:
        raise InvalidScoreError(PyUnicode_Format(_FMT_SCORE_TYPE, (_describe(index), tp.__name__)), index, sent)
    if isinstance(score, float):  # float subclasses, e.g. numpy.float64
        return _format_score(PyNumber_Float(score), index, sent)
    if isinstance(score, int):  # int subclasses (IntEnum, ...)
        return _format_score(PyNumber_Long(score), index, sent)
    if _hasattr(tp, "__index__") and not isinstance(score, _str_or_bytes):
        try:
            value = PyNumber_Index(score)  # numpy integers
        except TypeError:
            pass
        else:
            return _format_score(value, index, sent)
    raise InvalidScoreError(PyUnicode_Format(_FMT_SCORE_TYPE, (_describe(index), tp.__name__)), index, sent)


cdef bytes _format_big_int(object score, object index, object sent):
    try:
        value = PyNumber_Float(score)
    except OverflowError:
        raise InvalidScoreValueError(PyUnicode_Format(_FMT_BIG, _describe(index)), index, sent) from None
    return _float_bytes(PyFloat_AS_DOUBLE(value))


def format_score(score, index=None, sent=0):
    """Return the RESP argument for a score, after checking it.

    Integers within 2**53 are sent as their digits; other reals as the
    shortest repr that round-trips (``repr(float)``), ``inf``/``-inf`` included.

    :raises InvalidScoreError: (a ``TypeError``) for bool, None, str, Decimal
        and anything that is not an int or float.
    :raises InvalidScoreValueError: (a ``ValueError``) for NaN and for
        integers beyond the range of a double.
    """
    return _format_score(score, index, sent)


# ---------------------------------------------------------------------------
# Members


cdef bint _orjson_safe(object obj, int depth) except -1:
    """True if orjson encodes ``obj`` to the same bytes as the stdlib would.

    Same rule as the Python twin: exact dicts with str keys, lists, tuples,
    str, bool, None and ints in orjson's 64-bit range; never floats.
    """
    cdef int overflow = 0
    cdef long long v
    cdef Py_ssize_t pos = 0, i, n
    cdef PyObject *key
    cdef PyObject *value
    tp = type(obj)
    if tp is str or obj is None or tp is bool:
        return True
    if tp is int:
        v = PyLong_AsLongLongAndOverflow(obj, &overflow)
        if overflow == 0:
            return True
        if overflow < 0:
            return False
        try:  # 2**63 .. 2**64 - 1 is still in orjson's range
            PyLong_AsUnsignedLongLong(obj)
        except OverflowError:
            return False
        return True
    if depth >= ORJSON_MAX_DEPTH:
        return False
    if tp is dict:
        # No Python code runs in here, so the dict cannot change under PyDict_Next.
        while PyDict_Next(obj, &pos, &key, &value):
            if type(<object>key) is not str or not _orjson_safe(<object>value, depth + 1):
                return False
        return True
    if tp is list:
        n = PyList_GET_SIZE(obj)
        for i in range(n):
            if not _orjson_safe(<object>PyList_GET_ITEM(obj, i), depth + 1):
                return False
        return True
    if tp is tuple:
        n = PyTuple_GET_SIZE(obj)
        for i in range(n):
            if not _orjson_safe(<object>PyTuple_GET_ITEM(obj, i), depth + 1):
                return False
        return True
    return False


cdef bytes _json_dumps(object obj, bint use_orjson):
    if use_orjson and _orjson_dumps is not None and _orjson_safe(obj, 0):
        return _orjson_dumps(obj, option=_orjson_sort_keys)
    return PyUnicode_AsUTF8String(_stdlib_json_encode(obj))


def json_dumps_canonical(obj, use_orjson=True):
    """Encode ``obj`` as canonical JSON: sorted keys, no spaces, UTF-8.

    The stdlib's output defines the format; orjson is used when installed and
    when it gives the same bytes. NaN and infinity are rejected.

    :raises TypeError: or ``ValueError`` when ``obj`` is not JSON.
    """
    return _json_dumps(obj, True if use_orjson else False)


cdef object _plain_member(object value):
    """Encode a value the way redis-py encodes a command argument, or None."""
    tp = type(value)
    if tp is bytes:
        return value
    if tp is str:
        return PyUnicode_AsUTF8String(value)
    if tp is int:
        return _int_bytes(value)
    if tp is float:
        return _float_bytes(PyFloat_AS_DOUBLE(value))
    if tp is bool or value is None:
        return None
    if isinstance(value, _bytes_like):
        return _bytes_type(value)
    if isinstance(value, str):
        return PyUnicode_AsUTF8String(value)
    if isinstance(value, int):
        return _int_bytes(PyNumber_Long(value))
    if isinstance(value, float):
        return _float_bytes(PyFloat_AS_DOUBLE(PyNumber_Float(value)))
    return None


cdef object _NOT_UTF8 = (
    "bytes that are not valid UTF-8: the default serializer gives items back as str, "
    "so these could not be popped; use BytesSerializer to store raw bytes"
)


cdef bint _is_utf8(bytes raw) except -1:
    """True when ``raw`` decodes as UTF-8 (ASCII is checked without decoding)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(raw)
    for i in range(n):
        if p[i] >= 0x80:
            return _decode_utf8_or_none(<const char *>p, n) is not None
    return True


cdef object _encode_member(int codec, object dumps, object item, object packer):
    """Encode one item; None means the codec does not accept it."""
    if codec == C_DEFAULT:
        out = _plain_member(item)
        if out is not None and isinstance(item, _bytes_like) and not _is_utf8(out):
            raise ValueError(_NOT_UTF8)
        return out
    if codec == C_STR:
        return PyUnicode_AsUTF8String(item) if isinstance(item, str) else None
    if codec == C_BYTES:
        return _bytes_type(item) if isinstance(item, _bytes_like) else None
    if codec == C_INT:
        if isinstance(item, int) and not isinstance(item, bool):
            if type(item) is int:
                return _int_bytes(item)
            return PyNumber_Remainder(_PCT_D, item)
        return None
    if codec == C_JSON:
        return _json_dumps(item, True)
    if codec == C_MSGPACK:
        if _msgpack_packb is None:
            raise RuntimeError(_NO_MSGPACK)
        if packer is not None:
            # A Packer private to one pack_zadd call: same bytes as packb(),
            # without building a Packer per item.
            return packer.pack(item)
        return _msgpack_packb(item, use_bin_type=True)
    if dumps is None:
        raise ValueError("CODEC_CUSTOM needs a dumps function")
    return _plain_member(dumps(item))


cdef bytes _encode_member_checked(int codec, object dumps, object item, object index, object sent,
                                  object packer):
    try:
        out = _encode_member(codec, dumps, item, packer)
    except (RuntimeError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise InvalidItemError(
            PyUnicode_Format(_FMT_ITEM_EXC, (_describe(index), type(exc).__name__, exc)), index, sent
        ) from exc
    if out is None:
        raise InvalidItemError(
            PyUnicode_Format(_FMT_ITEM_TYPE, (_describe(index), type(item).__name__)), index, sent
        )
    return out


def encode_member(codec, dumps, item, index=None, sent=0):
    """Serialize one item into the bytes stored as the member.

    :raises InvalidItemError: (a ``TypeError``) naming the item's index when
        the codec rejects the item or the serializer raises.
    """
    return _encode_member_checked(_codec_id(codec), dumps, item, index, sent, None)


# ---------------------------------------------------------------------------
# Decoding


cdef object _json_loads(object raw):
    if _orjson_loads is not None:
        try:
            return _orjson_loads(raw)
        except _orjson_decode_error:
            pass  # integers beyond 64 bits, NaN literals: the stdlib decides
    return _stdlib_json_loads(raw)


cdef object _decode_member(int codec, object loads, object raw):
    if codec == C_DEFAULT or codec == C_STR:
        if type(raw) is bytes:
            return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), NULL)
        return raw.decode("utf-8")
    if codec == C_BYTES:
        return raw
    if codec == C_INT:
        return PyNumber_Long(raw)
    if codec == C_JSON:
        return _json_loads(raw)
    if codec == C_MSGPACK:
        if _msgpack_unpackb is None:
            raise RuntimeError(_NO_MSGPACK)
        return _msgpack_unpackb(raw, raw=False, strict_map_key=False)
    if loads is None:
        raise ValueError("CODEC_CUSTOM needs a loads function")
    return loads(raw)


def decode_member(codec, loads, raw):
    """Deserialize one member; exceptions from the codec propagate."""
    return _decode_member(_codec_id(codec), loads, raw)


cdef inline object _raw(object value):
    if type(value) is str:  # a client that decodes responses
        return PyUnicode_AsUTF8String(value)
    return value


cdef int _decode_into(list out, int codec, object loads, object failures, object raw) except -1:
    if type(raw) is str:
        raw = PyUnicode_AsUTF8String(raw)
    if (codec == C_DEFAULT or codec == C_STR) and type(raw) is bytes:
        # Fast path, without a try block: most members decode.
        value = _decode_utf8_or_none(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
        if value is not None:
            out.append(value)
            return 0
        # The decode raised (and left the exception set): redo it under try.
    try:
        value = _decode_member(codec, loads, raw)
    except (RuntimeError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        failures.append((raw, exc))
        return 0
    out.append(value)
    return 0


def decode_items(reply, codec, loads, failures, with_scores):
    """Deserialize the members of a parsed reply, in order.

    ``reply`` is a list as hiredis parses it: with ``with_scores`` either the
    RESP2 flat ``[member, score, member, score, ...]`` or the RESP3 nested
    ``[[member, score], ...]``; without, a flat ``[member, ...]``. Scores are
    dropped. A member that fails to decode is appended to ``failures`` as
    ``(raw, exception)`` and skipped.
    """
    cdef list out = []
    cdef int c
    cdef Py_ssize_t i, n
    cdef bint nested_ok
    if not reply:
        return out
    c = _codec_id(codec)
    if type(reply) is not list:
        # Any other sequence: the twin's own steps, then the common loop.
        if with_scores:
            if type(PyObject_GetItem(reply, 0)) is list:
                raws = [PyObject_GetItem(pair, 0) for pair in reply]
            else:
                raws = reply[0::2]
        else:
            raws = reply
        for raw in raws:
            _decode_into(out, c, loads, failures, raw)
        return out
    n = PyList_GET_SIZE(reply)
    if with_scores:
        if type(<object>PyList_GET_ITEM(reply, 0)) is list:
            # RESP3: [[member, score], ...]. The twin takes every pair[0]
            # before decoding anything, so check the shape first; an odd
            # shape goes the twin's way and raises where it would.
            nested_ok = True
            for i in range(n):
                pair = <object>PyList_GET_ITEM(reply, i)
                if type(pair) is not list or PyList_GET_SIZE(pair) < 1:
                    nested_ok = False
                    break
            if not nested_ok:
                for raw in [PyObject_GetItem(pair, 0) for pair in reply]:
                    _decode_into(out, c, loads, failures, raw)
                return out
            i = 0
            while i < PyList_GET_SIZE(reply):
                pair = <object>PyList_GET_ITEM(reply, i)
                if type(pair) is not list or PyList_GET_SIZE(pair) < 1:
                    raise RuntimeError("reply changed while it was decoded")
                _decode_borrowed(out, c, loads, failures, PyList_GET_ITEM(pair, 0))
                i += 1
            return out
        # RESP2: [member, score, member, score, ...]
        i = 0
        while i < PyList_GET_SIZE(reply):
            _decode_borrowed(out, c, loads, failures, PyList_GET_ITEM(reply, i))
            i += 2
        return out
    i = 0
    while i < PyList_GET_SIZE(reply):
        _decode_borrowed(out, c, loads, failures, PyList_GET_ITEM(reply, i))
        i += 1
    return out


def decode_scored(reply):
    """Return ``[(member, score), ...]`` from a WITHSCORES or ZPOPMIN reply."""
    cdef list out
    cdef Py_ssize_t i, n
    if not reply:
        return []
    out = []
    if type(PyObject_GetItem(reply, 0)) is list:
        for pair in reply:
            if type(pair) is list and PyList_GET_SIZE(pair) >= 2:
                member = _raw(<object>PyList_GET_ITEM(pair, 0))
                score = PyNumber_Float(<object>PyList_GET_ITEM(pair, 1))
            else:
                member = _raw(PyObject_GetItem(pair, 0))
                score = PyNumber_Float(PyObject_GetItem(pair, 1))
            out.append((member, score))
        return out
    n = len(reply)
    for i in range(0, n, 2):
        if type(reply) is list and i + 1 < PyList_GET_SIZE(reply):
            member = _raw(<object>PyList_GET_ITEM(reply, i))
            score = PyNumber_Float(<object>PyList_GET_ITEM(reply, i + 1))
        else:
            member = _raw(PyObject_GetItem(reply, i))
            score = PyNumber_Float(PyObject_GetItem(reply, i + 1))
        out.append((member, score))
    return out


# ---------------------------------------------------------------------------
# Commands


cdef int _write_arg(_WriteBuffer buf, object value) except -1:
    cdef const char *data
    cdef Py_ssize_t size
    cdef int overflow = 0
    cdef long long v
    tp = type(value)
    if tp is bytes:
        return buf.write_bulk_bytes(value)
    if tp is str:
        data = PyUnicode_AsUTF8AndSize(value, &size)
        if data is NULL:
            PyErr_Clear()
            return buf.write_bulk_bytes(PyUnicode_AsUTF8String(value))  # raises the twin's error
        return buf.write_bulk(data, size)
    if tp is int:
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0:
            return buf.write_bulk_llong(v)
        return buf.write_bulk_bytes(PyNumber_Remainder(_PCT_D, value))
    if tp is float:
        return buf.write_bulk_bytes(_float_bytes(PyFloat_AS_DOUBLE(value)))
    if isinstance(value, _bytes_like):
        return buf.write_bulk_bytes(_bytes_type(value))
    raise TypeError(PyUnicode_Format(_FMT_ARG, tp.__name__))


def pack_command(args):
    """Encode one command as a RESP array of bulk strings.

    ``("ZCARD", b"k")`` becomes ``*2\\r\\n$5\\r\\nZCARD\\r\\n$1\\r\\nk\\r\\n``.
    """
    cdef Py_ssize_t n = len(args)
    cdef _WriteBuffer buf = _WriteBuffer(64 + 32 * n)
    buf.write_header(b'*', n)
    for value in args:
        _write_arg(buf, value)
    return buf.to_bytes()


cdef inline bint _zadd_pair_fast(_WriteBuffer buf, PyObject *score, PyObject *item, int codec) except -1:
    """Frame one score and member of exact, common types; False means "take the slow path".

    Runs no Python code, so the borrowed pointers stay valid, and writes
    nothing unless both halves are on the fast path.
    """
    cdef char stmp[32]
    cdef char mtmp[24]
    cdef const char *sdata
    cdef const char *mdata
    cdef char *alloc = NULL
    cdef char *p
    cdef Py_ssize_t slen, mlen
    cdef int overflow = 0
    cdef long long v
    cdef double d
    cdef PyTypeObject *tp = _type_of(score)
    if tp is &PyLong_Type:
        v = _long_value(score, &overflow)
        if overflow != 0 or v < -EXACT_INT or v > EXACT_INT:
            return False
        slen = _digits2(stmp + 32, v)
        sdata = stmp + 32 - slen
    elif tp is &PyFloat_Type:
        d = _float_value(score)
        if d != d:
            return False
        if fabs(d) < INTEGRAL_FLOAT_LIMIT and d == <double>(<long long>d):
            # "<digits>.0", as repr() writes integral floats below 1e16
            stmp[30] = b'.'
            stmp[31] = b'0'
            slen = _digits2(stmp + 30, <long long>d)
            if signbit(d) and d == 0.0:
                stmp[28] = b'-'
                slen = 2
            slen += 2
            sdata = stmp + 32 - slen
        else:
            alloc = PyOS_double_to_string(d, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
            sdata = alloc
            slen = <Py_ssize_t>strlen(alloc)
    else:
        return False

    tp = _type_of(item)
    if tp is &PyUnicode_Type and (codec == C_DEFAULT or codec == C_STR):
        mdata = _utf8_and_size(item, &mlen)
        if mdata is NULL:  # a lone surrogate: the slow path raises the twin's error
            PyErr_Clear()
            if alloc is not NULL:
                PyMem_Free(alloc)
            return False
    elif tp is &PyBytes_Type and (codec == C_BYTES or (codec == C_DEFAULT and _is_utf8(<bytes>item))):
        mdata = _bytes_data(item)
        mlen = _bytes_size(item)
    elif tp is &PyLong_Type and (codec == C_DEFAULT or codec == C_INT):
        v = _long_value(item, &overflow)
        if overflow != 0:
            if alloc is not NULL:
                PyMem_Free(alloc)
            return False
        mlen = _digits2(mtmp + 24, v)
        mdata = mtmp + 24 - mlen
    else:
        if alloc is not NULL:
            PyMem_Free(alloc)
        return False

    # "$<slen>\r\n<score>\r\n$<mlen>\r\n<member>\r\n": 50 covers both headers.
    if buf._len + slen + mlen + 50 > buf._size:
        try:
            buf._grow(slen + mlen + 50)
        except MemoryError:
            if alloc is not NULL:
                PyMem_Free(alloc)
            raise
    p = _put_bulk(buf._buf + buf._len, sdata, slen)
    p = _put_bulk(p, mdata, mlen)
    buf._len = p - buf._buf
    if alloc is not NULL:
        PyMem_Free(alloc)
    return True


def pack_zadd(key, flags, items, scores, codec, dumps, offset=0, sent=0):
    """Encode one ``ZADD key [flags] score member ...`` for a chunk of items.

    The whole chunk is encoded before anything is returned, so a bad item or
    score means nothing of this chunk is sent. ``offset`` is the index of
    ``items[0]`` in the caller's input (error messages name input indices);
    ``sent`` is how many items earlier chunks already sent.

    :raises InvalidItemError: an item the codec rejects.
    :raises InvalidScoreError: a score that is not a real number.
    :raises InvalidScoreValueError: a NaN score or an int beyond double range.
    :raises ValueError: ``items`` and ``scores`` differ in length, or are empty.
    """
    cdef Py_ssize_t n = len(items)
    cdef Py_ssize_t n_scores = len(scores)
    cdef Py_ssize_t i, size
    cdef int c, items_kind, scores_kind, overflow
    cdef long long v
    cdef double d
    cdef const char *data
    cdef _WriteBuffer buf
    cdef list flag_args
    if n_scores != n:
        raise ValueError("got %d items but %d scores" % (n, n_scores))
    if n == 0:
        raise ValueError("ZADD needs at least one item")
    if type(key) is not bytes:
        key = _arg_bytes(key)
    flag_args = [flag if type(flag) is bytes else _arg_bytes(flag) for flag in flags]
    c = _codec_id(codec)
    items_kind = _seq_kind(items)
    scores_kind = _seq_kind(scores)
    packer = None
    if c == C_MSGPACK and _msgpack_packer is not None:
        packer = _msgpack_packer(use_bin_type=True)

    # *N\r\n$4\r\nZADD\r\n$<len>\r\n<key>\r\n [flags] then $..score..$..member.. pairs
    buf = _WriteBuffer(64 + PyBytes_GET_SIZE(key) + 32 * n)
    buf.write_header(b'*', 2 + len(flag_args) + 2 * n)
    buf.write_raw(b"$4\r\nZADD\r\n", 10)
    buf.write_bulk_bytes(key)
    for flag in flag_args:
        buf.write_bulk_bytes(flag)

    for i in range(n):
        if (items_kind == 1 and i < PyList_GET_SIZE(items) or items_kind == 2) and (
            scores_kind == 1 and i < PyList_GET_SIZE(scores) or scores_kind == 2
        ):
            if _zadd_pair_fast(
                buf,
                PyList_GET_ITEM(scores, i) if scores_kind == 1 else PyTuple_GET_ITEM(scores, i),
                PyList_GET_ITEM(items, i) if items_kind == 1 else PyTuple_GET_ITEM(items, i),
                c,
            ):
                continue
        # Slow path: anything may run Python code, so hold references.
        score = _item_at(scores, i, scores_kind)
        tp = type(score)
        overflow = 0
        if tp is int:
            v = PyLong_AsLongLongAndOverflow(score, &overflow)
            if overflow == 0 and -EXACT_INT <= v <= EXACT_INT:
                buf.write_bulk_llong(v)
            else:
                buf.write_bulk_bytes(_format_score(score, offset + i, sent))
        elif tp is float and PyFloat_AS_DOUBLE(score) == PyFloat_AS_DOUBLE(score):
            buf.write_bulk_double(PyFloat_AS_DOUBLE(score))
        else:
            buf.write_bulk_bytes(_format_score(score, offset + i, sent))

        item = _item_at(items, i, items_kind)
        tp = type(item)
        if tp is str and (c == C_DEFAULT or c == C_STR):
            data = PyUnicode_AsUTF8AndSize(item, &size)
            if data is not NULL:
                buf.write_bulk(data, size)
                continue
            PyErr_Clear()  # a lone surrogate: the checked path raises the twin's error
        elif tp is bytes and (c == C_BYTES or (c == C_DEFAULT and _is_utf8(<bytes>item))):
            buf.write_bulk_bytes(item)
            continue
        elif tp is int and (c == C_DEFAULT or c == C_INT):
            v = PyLong_AsLongLongAndOverflow(item, &overflow)
            if overflow == 0:
                buf.write_bulk_llong(v)
                continue
        buf.write_bulk_bytes(_encode_member_checked(c, dumps, item, offset + i, sent, packer))
    return buf.to_bytes()


cdef bytes _arg_bytes(object value):
    """``_arg`` of the twin: one command argument as bytes."""
    tp = type(value)
    if tp is bytes:
        return value
    if tp is str:
        return PyUnicode_AsUTF8String(value)
    if tp is int:
        return _int_bytes(value)
    if tp is float:
        return _float_bytes(PyFloat_AS_DOUBLE(value))
    if isinstance(value, _bytes_like):
        return _bytes_type(value)
    raise TypeError(PyUnicode_Format(_FMT_ARG, tp.__name__))



# ---------------------------------------------------------------------------
# Pop replies, parsed and decoded in one step

cdef extern from "Python.h":
    # Sets ValueError (and *endptr = s) when no prefix of s is a number:
    # checked by hand, then cleared, as the text goes to float() then.
    double PyOS_string_to_double(const char *s, char **endptr, PyObject *overflow_exception) noexcept
    PyObject *PyErr_Occurred() noexcept

# The messages of InvalidResponse, as the Python twin formats them.
cdef object _M_TYPE = "Protocol error: unexpected reply type byte %r in a pop reply"
cdef object _M_LENGTH = "Protocol error: invalid length %r in a pop reply"
cdef object _M_CRLF = "Protocol error: bulk string not terminated by CRLF in a pop reply"
cdef object _M_PAIR = "Protocol error: expected a [member, score] pair, got an array of %r in a pop reply"
cdef object _M_ODD = "Protocol error: odd element count %d in a pop reply with scores"
cdef object _M_NULL = "Protocol error: invalid null reply %r in a pop reply"
cdef object _M_SCORE = "Protocol error: invalid score %r in a pop reply"
cdef str _M_RAW = "raw pairs need a reader created with with_scores=True"
cdef str _M_BUSY = "PopReader used again while gets() was decoding"
cdef object _float = float
DEF MAX_DIGITS = 18
DEF MIN_BUF = 65536


# PopReader here parses in C: the transports read pops from the socket with it.
NATIVE_POP_READER = True


class ErrorReply(str):
    """An error reply of the server (its message), returned by :meth:`PopReader.gets`.

    It is a value, not an exception: the transport turns it into redis-py's
    exception class once the connection is back in a clean state.
    """

    __slots__ = ()


cdef inline Py_ssize_t _find_crlf(const char *buf, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """Index of the first "\r\n" in buf[pos:end], or -1 (bytes.find(b"\r\n"))."""
    cdef const char *p
    while pos + 1 < end:
        p = <const char *>memchr(buf + pos, 13, <size_t>(end - pos - 1))
        if p is NULL:
            return -1
        pos = p - buf
        if buf[pos + 1] == 10:
            return pos
        pos += 1
    return -1


cdef inline Py_ssize_t _digits(const char *s, Py_ssize_t n) noexcept:
    """The value of 1 to 18 ASCII digits, or -1."""
    cdef Py_ssize_t v = 0, i
    if n < 1 or n > MAX_DIGITS:
        return -1
    for i in range(n):
        if s[i] < 48 or s[i] > 57:
            return -1
        v = v * 10 + (s[i] - 48)
    return v


cdef inline Py_ssize_t _length(const char *s, Py_ssize_t n) except -1:
    cdef Py_ssize_t v = _digits(s, n)
    if v < 0:
        raise InvalidResponse(PyUnicode_Format(_M_LENGTH, (PyBytes_FromStringAndSize(s, n),)))
    return v


cdef inline object _bad_type(const char *p):
    return InvalidResponse(PyUnicode_Format(_M_TYPE, (PyBytes_FromStringAndSize(p, 1),)))


cdef inline Py_ssize_t _bulk(const char *buf, Py_ssize_t p, Py_ssize_t size, Py_ssize_t *data) except -2:
    """Check "$<n>\r\n<data>\r\n" at p (its "$" already checked): its end, or -1 if incomplete."""
    cdef Py_ssize_t end, q = p + 1, v = 0
    # Fast path: 1 to 18 digits then "\r\n", all arrived. Anything else takes
    # the general path, which decides exactly as the twin's bytes.find does.
    while q < size and q - p <= MAX_DIGITS and 48 <= buf[q] <= 57:
        v = v * 10 + (buf[q] - 48)
        q += 1
    if q > p + 1 and q - p <= MAX_DIGITS + 1 and q + 1 < size and buf[q] == 13 and buf[q + 1] == 10:
        data[0] = q + 2
        q += 2 + v
        if q + 2 > size:
            return -1
        if buf[q] != 13 or buf[q + 1] != 10:
            raise InvalidResponse(_M_CRLF)
        return q + 2
    end = _find_crlf(buf, p + 1, size)
    if end < 0:
        return -1
    data[0] = end + 2
    p = end + 2 + _length(buf + p + 1, end - p - 1)
    if p + 2 > size:
        return -1
    if buf[p] != 13 or buf[p + 1] != 10:
        raise InvalidResponse(_M_CRLF)
    return p + 2


cdef inline Py_ssize_t _walk_bulk(const char *buf, Py_ssize_t p, Py_ssize_t *data) noexcept:
    """The end of the bulk string at p, already checked by the scan; its data at data[0]."""
    cdef Py_ssize_t v = 0
    p += 1
    while buf[p] != 13:
        v = v * 10 + (buf[p] - 48)
        p += 1
    data[0] = p + 2
    return p + 4 + v


cdef inline Py_ssize_t _walk_line(const char *buf, Py_ssize_t p, Py_ssize_t end) noexcept:
    """The end of the line at p, already checked by the scan."""
    return _find_crlf(buf, p + 1, end) + 2


cdef object _score_of(const char *s, Py_ssize_t n):
    """float() of a score's text; the exact call float(bytes) makes unless the text is plain."""
    cdef char *end = NULL
    cdef double d
    cdef long long v = 0
    cdef Py_ssize_t i = 0
    if 0 < n <= 15:
        # Plain integer digits (what integer scores come back as): exact in
        # a double, so converted here, as float() would, without its parser.
        # "-0" is left to it (-0.0).
        if s[0] == b'-':
            i = 1
        if i < n:
            while i < n and 48 <= s[i] <= 57:
                v = v * 10 + (s[i] - 48)
                i += 1
            if i == n and not (s[0] == b'-' and v == 0):
                return PyFloat_FromDouble(<double>(-v if s[0] == b'-' else v))
    if n > 0:
        d = PyOS_string_to_double(s, &end, NULL)
        if d == -1.0 and PyErr_Occurred() is not NULL:
            PyErr_Clear()
        elif end == s + n:
            return PyFloat_FromDouble(d)
    text = PyBytes_FromStringAndSize(s, n)
    try:
        return _float(text)  # the builtin, as the twin calls it (Cython's inlined float() differs)
    except ValueError:
        raise InvalidResponse(PyUnicode_Format(_M_SCORE, (text,))) from None


class _MemberProbe:
    __slots__ = ("x",)


cdef object _ONE = 1
cdef object _FALSE = False
#: The slots a lease handle class gets from a reader: (name, ...) in order.
LEASE_SLOTS = ("_batch", "member", "item", "score", "deliveries", "_settled")
cdef object _member_descriptor = type(_MemberProbe.x)


cdef extern from *:
    """
    #include <structmember.h>
    /* The byte offset of a slot, from its member descriptor (-1 if the
       descriptor is not a plain object slot). */
    static Py_ssize_t __redset_slot_offset(PyObject *descr) {
        PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
        return m->type == T_OBJECT_EX ? m->offset : -1;
    }
    /* A new instance of a class whose instances object.__new__ makes, its
       slots all NULL. */
    static PyObject *__redset_new_instance(PyObject *cls) {
        PyTypeObject *t = (PyTypeObject *)cls;
        return t->tp_alloc(t, 0);
    }
    /* Store a new reference to value in an empty slot. */
    static void __redset_put_slot(PyObject *obj, Py_ssize_t offset, PyObject *value) {
        Py_INCREF(value);
        *(PyObject **)((char *)obj + offset) = value;
    }
    /* The object in a slot (borrowed), or NULL if it is empty. */
    static PyObject *__redset_slot(PyObject *obj, Py_ssize_t offset) {
        return *(PyObject **)((char *)obj + offset);
    }
    static void __redset_untrack(PyObject *obj) {
        if (PyObject_IS_GC(obj) && PyObject_GC_IsTracked(obj)) PyObject_GC_UnTrack(obj);
    }
    static int __redset_cmp_ptr(const void *a, const void *b) {
        PyObject *x = *(PyObject *const *)a, *y = *(PyObject *const *)b;
        return x < y ? -1 : x > y;
    }
    """
    Py_ssize_t _slot_offset "__redset_slot_offset"(object descr)
    object _new_instance "__redset_new_instance"(object cls)
    void _put_slot "__redset_put_slot"(object obj, Py_ssize_t offset, object value)
    PyObject *_slot "__redset_slot"(object obj, Py_ssize_t offset)
    void _untrack "__redset_untrack"(object obj)
    int _cmp_ptr "__redset_cmp_ptr"(const void *a, const void *b) noexcept nogil

from libc.stdlib cimport qsort

cdef dict _LEASE_OFFSETS = {}


cdef tuple _lease_offsets(object cls):
    """The slot offsets of :data:`LEASE_SLOTS` on ``cls``, checked once per class."""
    found = _LEASE_OFFSETS.get(cls)
    if found is None:
        if not isinstance(cls, type) or cls.__new__ is not object.__new__:
            raise TypeError("%r must be a class whose instances object.__new__ makes" % (cls,))
        offsets = []
        for name in LEASE_SLOTS:
            d = getattr(cls, name, None)
            if type(d) is not _member_descriptor or _slot_offset(d) < 0:
                raise TypeError("%r has no slot %r" % (cls, name))
            offsets.append(_slot_offset(d))
        found = _LEASE_OFFSETS[cls] = tuple(offsets)
    return <tuple>found


def whole_batch(list leases, object batch):
    """True if ``leases`` holds ``batch.n`` distinct handles, all of
    ``batch`` (their ``_batch`` slot), none marked ``_settled``.

    The handles must be of a class with the slots of :data:`LEASE_SLOTS`.
    """
    cdef Py_ssize_t n = len(leases), i, off_batch, off_settled
    cdef PyObject **ptrs
    cdef PyObject *x
    if n == 0 or n != batch.n:
        return False
    cls = type(leases[0])
    offsets = _lease_offsets(cls)
    off_batch = offsets[0]
    off_settled = offsets[5]
    for i in range(n):
        item = <object>PyList_GET_ITEM(leases, i)
        if type(item) is not cls:
            return False
        if _slot(item, off_batch) != <PyObject *>batch or _slot(item, off_settled) != <PyObject *>_FALSE:
            return False
    ptrs = <PyObject **>PyMem_Malloc(n * sizeof(PyObject *))
    if ptrs is NULL:
        raise MemoryError()
    try:
        for i in range(n):
            ptrs[i] = PyList_GET_ITEM(leases, i)
        qsort(ptrs, n, sizeof(PyObject *), _cmp_ptr)
        for i in range(1, n):
            if ptrs[i] == ptrs[i - 1]:
                return False
    finally:
        PyMem_Free(ptrs)
    return True


@cython.final
cdef class PopReader:
    """Parse pop replies from raw RESP bytes and decode their members.

    One reader serves one connection: :meth:`feed` it the bytes read from the
    socket, in chunks of any size, and call :meth:`gets` for each reply. It
    accepts what ZPOPMIN and redset's pop scripts return on RESP2 and RESP3:

    * ``*2N`` flat ``$member``, ``$score`` (RESP2, scripts on both protocols,
      RESP3 on Redis 6.2 with ``,score`` doubles);
    * ``*N`` of ``*2`` [``$member``, ``,score``] pairs (RESP3, Redis 7+);
    * without scores, ``*N`` of ``$member``;
    * ``*0``, ``*-1`` and ``_`` (empty); ``-ERR ...`` and ``!<len>`` errors.

    Anything else (push ``>``, attributes ``|``, other types, bad framing)
    raises :class:`redis.exceptions.InvalidResponse`, and the reader (and
    the connection it read from) should be discarded.

    The bytes are checked element by element as they arrive (no Python
    object is built); once a reply is complete its members are decoded
    straight from the buffer.
    """

    def __cinit__(self, codec, loads, with_scores):
        self._buf = <char *>PyMem_Malloc(MIN_BUF)
        if self._buf is NULL:
            raise MemoryError()
        self._members = NULL
        self._members_cap = 0
        self._size = MIN_BUF
        self._len = 0
        self._start = 0
        self._body = 0
        self._scan = 0
        self._left = -1
        self._count = -1
        self._nested = False
        self._busy = False
        self._codec = _codec_id(codec)
        self._codec_obj = codec
        self._loads = loads
        self._with_scores = True if with_scores else False

    def __dealloc__(self):
        if self._buf is not NULL:
            PyMem_Free(self._buf)
            self._buf = NULL
        if self._members is not NULL:
            PyMem_Free(self._members)
            self._members = NULL

    def feed(self, data):
        """Append bytes read from the connection (bytes, bytearray or memoryview)."""
        cdef Py_buffer view
        cdef Py_ssize_t n, keep, new_size
        cdef char *new_buf
        if self._busy:
            raise RuntimeError(_M_BUSY)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            n = view.len
            if self._len + n > self._size and self._start > 0:
                # Compact: drop the consumed bytes before the current reply.
                keep = self._len - self._start
                memmove(self._buf, self._buf + self._start, <size_t>keep)
                self._body -= self._start
                self._scan -= self._start
                self._len = keep
                self._start = 0
            if self._len + n > self._size:
                new_size = self._size * 2
                if new_size < self._len + n:
                    new_size = self._len + n
                new_buf = <char *>PyMem_Realloc(self._buf, <size_t>new_size)
                if new_buf is NULL:
                    raise MemoryError()
                self._buf = new_buf
                self._size = new_size
            memcpy(self._buf + self._len, view.buf, <size_t>n)
            self._len += n
        finally:
            PyBuffer_Release(&view)

    def pending(self):
        """True if bytes were fed that no returned reply consumed yet."""
        return self._len > self._start

    def header(self):
        """The member count announced by the next reply, or -1 if unknown yet.

        -1 means "not known": the header has not fully arrived, the reply is
        an error, or it is malformed (:meth:`gets` raises then). A value
        ``>= 0`` is exact: the number of members in the reply (some of which
        may still fail to decode).
        """
        if self._left < 0:
            try:
                if self._head() != 1:
                    return -1
            except InvalidResponse:
                return -1
        return self._count

    def complete(self):
        """True once the next reply has fully arrived, so :meth:`gets` will
        not return False for want of bytes (also True for an error reply's
        first byte and for bytes that are not a pop reply: :meth:`gets`
        tells which). Scans what is new since the last call; consumes nothing.
        """
        cdef int head
        try:
            if self._left < 0:
                head = self._head()
                if head != 1:
                    return head == 2
            return self._left == 0 or self._scan_more()
        except InvalidResponse:
            return True

    cdef int _head(self) except -2:
        """Scan the header of the next reply: 1 done, 0 incomplete, 2 an error reply."""
        cdef const char *buf = self._buf
        cdef Py_ssize_t pos = self._start, size = self._len, end, n
        cdef bint nested = False
        cdef char kind
        if pos >= size:
            return 0
        kind = buf[pos]
        if kind == b'*':
            end = _find_crlf(buf, pos + 1, size)
            if end < 0:
                return 0
            if end == pos + 3 and buf[pos + 1] == b'-' and buf[pos + 2] == b'1':
                n = 0
            else:
                n = _length(buf + pos + 1, end - pos - 1)
                if self._with_scores and n:
                    if end + 2 >= size:
                        return 0  # the first element tells flat from nested
                    if buf[end + 2] == b'*':
                        nested = True
                    elif n % 2:
                        raise InvalidResponse(PyUnicode_Format(_M_ODD, n))
                    else:
                        n //= 2
        elif kind == b'_':
            end = _find_crlf(buf, pos + 1, size)
            if end < 0:
                return 0
            if end != pos + 1:
                raise InvalidResponse(PyUnicode_Format(
                    _M_NULL, (PyBytes_FromStringAndSize(buf + pos + 1, end - pos - 1),)))
            n = 0
        elif kind == b'-' or kind == b'!':
            return 2
        else:
            raise _bad_type(buf + pos)
        self._body = end + 2
        self._scan = end + 2
        self._left = n
        self._count = n
        self._nested = nested
        return 1

    cdef object _error(self):
        cdef const char *buf = self._buf
        cdef Py_ssize_t pos = self._start, size = self._len, end, start
        end = _find_crlf(buf, pos + 1, size)
        if end < 0:
            return False
        if buf[pos] == b'-':
            start = pos + 1
            self._start = end + 2
        else:
            start = end + 2
            end = start + _length(buf + pos + 1, end - pos - 1)
            if end + 2 > size:
                return False
            if buf[end] != 13 or buf[end + 1] != 10:
                raise InvalidResponse(_M_CRLF)
            self._start = end + 2
        return ErrorReply(PyUnicode_DecodeUTF8(buf + start, end - start, "replace"))

    cdef int _grow_members(self, Py_ssize_t need) except -1:
        """Room in ``_members`` for at least ``need`` members."""
        cdef Py_ssize_t cap = 2 * self._members_cap
        cdef Py_ssize_t *new_members
        if cap < 256:
            cap = 256
        if cap < need:
            cap = need
        new_members = <Py_ssize_t *>PyMem_Realloc(self._members, <size_t>cap * 2 * sizeof(Py_ssize_t))
        if new_members is NULL:
            raise MemoryError()
        self._members = new_members
        self._members_cap = cap
        return 0

    cdef bint _scan_more(self) except -1:
        """Check further elements of the current reply; True when it is complete.

        Each element checked has its member recorded in ``_members`` (the
        offset of its data from ``_body``, its length), so that decoding
        goes straight to the members without walking the bytes again.
        """
        cdef const char *buf = self._buf
        cdef Py_ssize_t size = self._len, pos = self._scan, left = self._left, p, end, data, member, length
        cdef Py_ssize_t k = self._count - left, room
        cdef bint nested = self._nested, with_scores = self._with_scores
        while left:
            # The elements in the plain forms first (_scan_fast), then one
            # element the general way below, which decides what the fast
            # scan stopped at: not all arrived, an odd form, or an error.
            # An element takes at least 6 bytes ("$0\r\n\r\n").
            room = (size - pos) // 6 + 1
            if room > left:
                room = left
            if k + room > self._members_cap:
                self._grow_members(k + room)
            room = _scan_fast(buf, size, &pos, room, nested, with_scores, self._body, self._members + 2 * k)
            k += room
            left -= room
            if not left:
                break
            p = pos
            if nested:  # "*2\r\n"
                if p >= size:
                    break
                if buf[p] != b'*':
                    raise _bad_type(buf + p)
                end = _find_crlf(buf, p + 1, size)
                if end < 0:
                    break
                if end != p + 2 or buf[p + 1] != b'2':
                    raise InvalidResponse(PyUnicode_Format(
                        _M_PAIR, (PyBytes_FromStringAndSize(buf + p + 1, end - p - 1),)))
                p = end + 2
            if p >= size:
                break
            if buf[p] != b'$':
                raise _bad_type(buf + p)
            p = _bulk(buf, p, size, &member)
            if p < 0:
                break
            length = p - 2 - member
            if with_scores:
                if p >= size:
                    break
                if buf[p] == b'$':
                    p = _bulk(buf, p, size, &data)
                    if p < 0:
                        break
                elif buf[p] == b',':
                    end = _find_crlf(buf, p + 1, size)
                    if end < 0:
                        break
                    p = end + 2
                else:
                    raise _bad_type(buf + p)
            if k >= self._members_cap:
                self._grow_members(k + 1)
            self._members[2 * k] = member - self._body
            self._members[2 * k + 1] = length
            k += 1
            pos = p
            left -= 1
        self._scan = pos
        self._left = left
        return left == 0

    def gets(self, failures, raw=None, leases=None):
        """Return the next complete reply, decoded.

        :param failures: members that fail to decode are appended as
            ``(raw_member, exception)`` and skipped, as :func:`decode_items`
            does (RuntimeError, MemoryError and KeyboardInterrupt propagate).
        :param raw: if given, ``(member_bytes, score_float)`` pairs are
            appended to it instead of decoding, and an empty list is
            returned (the reader must have been created ``with_scores``).
        :param leases: ``(cls, batch, deliveries, codec, loads)``: return
            lease handles instead of items, members decoded with ``codec``
            and ``loads`` (reader created ``with_scores``): one ``cls``
            instance per member that decodes, with its slots ``_batch``
            (``batch``), ``member``, ``item``, ``score``, ``deliveries``
            (``deliveries.get(member, 1)``, or 1 when it is None) and
            ``_settled`` (False) set, and no ``__init__`` run.
        :returns: the list of decoded items; ``False`` if the reply has not
            fully arrived; an :class:`ErrorReply` for an error reply.
        :raises redis.exceptions.InvalidResponse: the bytes are not a pop reply.
        """
        cdef int head
        cdef Py_ssize_t body, end, count
        if raw is not None and not self._with_scores:
            raise ValueError(_M_RAW)
        if self._busy:
            raise RuntimeError(_M_BUSY)
        if self._left < 0:
            head = self._head()
            if head == 0:
                return False
            if head == 2:
                return self._error()
        if self._left and not self._scan_more():
            return False
        body = self._body
        end = self._scan
        count = self._count
        # Consumed, whatever decoding does next; the bytes stay put while
        # _busy keeps feed() from moving them.
        self._start = end
        self._left = -1
        self._count = -1
        self._busy = True
        try:
            if raw is not None:
                self._raw_pairs(body, end, <list?>raw)
                return []
            if leases is not None:
                return self._leases(body, end, failures, <tuple?>leases)
            return self._decode(body, count, failures)
        finally:
            self._busy = False

    cdef list _decode(self, Py_ssize_t body, Py_ssize_t count, object failures):
        """The ``count`` members the scan recorded, decoded."""
        cdef list out
        cdef const char *buf = self._buf + body
        cdef Py_ssize_t *members = self._members
        cdef Py_ssize_t cap = self._members_cap, i = 0, off, n
        cdef int codec = self._codec
        cdef PyObject *value
        loads = self._loads
        if codec == C_DEFAULT or codec == C_STR:
            # Text: the list made at its full size and filled in place while
            # every member is UTF-8 (no Python code runs meanwhile, nor the
            # cycle collector: a str is not tracked); at the first that is
            # not, cut to what it holds and go on below, where it becomes a
            # failure.
            out = _new_list(count)
            while i < count:
                value = _str_of(buf + members[2 * i], members[2 * i + 1])
                if value is NULL:
                    PyErr_Clear()
                    break
                _list_set(out, i, value)
                i += 1
            if i == count:
                return out
            _set_size(out, i)
        else:
            out = []
        # Held here while decoding: a scan re-entered from a loads function
        # (header(), complete()) records the next reply into a new array.
        self._members = NULL
        self._members_cap = 0
        try:
            while i < count:
                off = members[2 * i]
                n = members[2 * i + 1]
                _decode_into(out, codec, loads, failures, PyBytes_FromStringAndSize(buf + off, n))
                i += 1
        finally:
            if self._members is NULL:
                self._members = members
                self._members_cap = cap
            else:
                PyMem_Free(members)
        return out

    cdef list _leases(self, Py_ssize_t pos, Py_ssize_t end, object failures, tuple spec):
        cdef list out = []
        cdef list one = []
        cdef const char *buf = self._buf
        cdef Py_ssize_t data, next_pos, e
        cdef bint nested = self._nested
        cdef int codec
        cdef PyObject *value
        cdef Py_ssize_t o_batch, o_member, o_item, o_score, o_deliveries, o_settled
        if not self._with_scores:
            raise ValueError(_M_RAW)
        cls, batch, deliveries, codec_obj, loads = spec
        codec = _codec_id(codec_obj)
        offsets = _lease_offsets(cls)
        o_batch, o_member, o_item, o_score, o_deliveries, o_settled = offsets
        while pos < end:
            if nested:
                pos += 4
            next_pos = _walk_bulk(buf, pos, &data)
            member = PyBytes_FromStringAndSize(buf + data, next_pos - 2 - data)
            pos = next_pos
            if buf[pos] == b'$':
                next_pos = _walk_bulk(buf, pos, &data)
                score = _score_of(buf + data, next_pos - 2 - data)
            else:
                e = _find_crlf(buf, pos + 1, end)
                next_pos = e + 2
                score = _score_of(buf + pos + 1, e - pos - 1)
            pos = next_pos
            if codec == C_DEFAULT or codec == C_STR:
                item = _decode_utf8_or_none(PyBytes_AS_STRING(member), PyBytes_GET_SIZE(member))
                if item is None:
                    del one[:]
                    _decode_into(one, codec, loads, failures, member)
                    if not one:
                        continue
                    item = one[0]
            else:
                del one[:]
                _decode_into(one, codec, loads, failures, member)
                if not one:
                    continue
                item = one[0]
            count = _ONE if deliveries is None else deliveries.get(member, _ONE)
            lease = _new_instance(cls)
            _put_slot(lease, o_batch, batch)
            _put_slot(lease, o_member, member)
            _put_slot(lease, o_item, item)
            _put_slot(lease, o_score, score)
            _put_slot(lease, o_deliveries, count)
            _put_slot(lease, o_settled, _FALSE)
            # Built by the thousand: kept out of the cycle collector's young
            # generation (a handle refers to its batch, member, item, score).
            _untrack(lease)
            out.append(lease)
        return out

    cdef int _raw_pairs(self, Py_ssize_t pos, Py_ssize_t end, list raw) except -1:
        cdef const char *buf = self._buf
        cdef Py_ssize_t data, next_pos, e
        cdef bint nested = self._nested
        while pos < end:
            if nested:
                pos += 4
            next_pos = _walk_bulk(buf, pos, &data)
            member = PyBytes_FromStringAndSize(buf + data, next_pos - 2 - data)
            pos = next_pos
            if buf[pos] == b'$':
                next_pos = _walk_bulk(buf, pos, &data)
                score = _score_of(buf + data, next_pos - 2 - data)
            else:
                e = _find_crlf(buf, pos + 1, end)
                next_pos = e + 2
                score = _score_of(buf + pos + 1, e - pos - 1)
            raw.append((member, score))
            pos = next_pos
        return 0
