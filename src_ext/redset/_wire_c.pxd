# Declarations for redset._wire_c (source: src_ext/_wire_c.pyx). Cython finds
# the .pxd of module redset._wire_c at redset/_wire_c.pxd under the source root.

cimport cython
from cpython.object cimport PyObject, PyTypeObject

cdef extern from "Python.h":
    # repr(float): the shortest string that round-trips, with ".0" on integers.
    char* PyOS_double_to_string(double val, char format_code, int precision,
                                int flags, int *type) except NULL
    int Py_DTSF_ADD_DOT_0
    # Returns NULL with an exception set (lone surrogates); handled by hand
    # so that the hot loop needs no try block.
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) noexcept

    # The same calls on borrowed pointers, for loops that run no Python code
    # and so need no reference counting (none of these can fail on the exact
    # type they are used for, except the two that return NULL).
    PyTypeObject PyLong_Type
    PyTypeObject PyFloat_Type
    PyTypeObject PyUnicode_Type
    PyTypeObject PyBytes_Type
    PyTypeObject *_type_of "Py_TYPE"(PyObject *o) noexcept
    long long _long_value "PyLong_AsLongLongAndOverflow"(PyObject *o, int *overflow) noexcept
    double _float_value "PyFloat_AS_DOUBLE"(PyObject *o) noexcept
    const char *_utf8_and_size "PyUnicode_AsUTF8AndSize"(PyObject *o, Py_ssize_t *size) noexcept
    char *_bytes_data "PyBytes_AS_STRING"(PyObject *o) noexcept
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE"(PyObject *o) noexcept
    # New reference, or NULL with UnicodeDecodeError set.
    PyObject *_decode_utf8 "PyUnicode_DecodeUTF8"(const char *s, Py_ssize_t n, const char *errors) noexcept


@cython.final
cdef class _WriteBuffer:
    """One growing C buffer that a whole command is framed into.

    The shape of py-pgproto's WriteBuffer, cut down to what RESP needs:
    reserve once per bulk string, write, and copy out a ``bytes`` at the end.
    """
    cdef:
        char *_buf
        Py_ssize_t _size
        Py_ssize_t _len

    cdef int _grow(self, Py_ssize_t extra) except -1
    cdef int write_raw(self, const char *data, Py_ssize_t n) except -1
    cdef int write_header(self, char kind, Py_ssize_t n) except -1
    cdef int write_bulk(self, const char *data, Py_ssize_t n) except -1
    cdef int write_bulk_bytes(self, bytes data) except -1
    cdef int write_bulk_llong(self, long long value) except -1
    cdef int write_bulk_double(self, double value) except -1
    cdef bytes to_bytes(self)


@cython.final
cdef class PopReader:
    """An incremental parser of pop replies over its own growing buffer.

    ``_buf[_start:_len]`` is the unconsumed input; the current reply starts
    at ``_start``, its elements at ``_body``, and ``_scan`` is the first
    element not yet checked (``_left`` elements, or pairs, remain; -1: no
    header parsed yet). ``_members[2 * i]`` and ``_members[2 * i + 1]``:
    where the data of the current reply's member ``i`` starts (from
    ``_body``) and its length, for each member checked (room for
    ``_members_cap``).
    """
    cdef:
        char *_buf
        Py_ssize_t _size
        Py_ssize_t _len
        Py_ssize_t _start
        Py_ssize_t _body
        Py_ssize_t _scan
        Py_ssize_t _left
        Py_ssize_t _count
        bint _nested
        bint _with_scores
        bint _busy
        int _codec
        object _codec_obj
        object _loads
        Py_ssize_t *_members
        Py_ssize_t _members_cap

    cdef int _head(self) except -2
    cdef list _leases(self, Py_ssize_t pos, Py_ssize_t end, object failures, tuple spec)
    cdef object _error(self)
    cdef int _grow_members(self, Py_ssize_t need) except -1
    cdef bint _scan_more(self) except -1
    cdef list _decode(self, Py_ssize_t body, Py_ssize_t count, object failures)
    cdef int _raw_pairs(self, Py_ssize_t pos, Py_ssize_t end, list raw) except -1
