# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled digest engine: resumable SHA-256/512 over OpenSSL, and HTTP range parsing.

Theory of operation
-------------------
`sha256` and `sha512` behave like hashlib objects (update/digest/hexdigest/copy) but also
export and import their running state in exactly the byte format of Go's
`crypto/sha256` / `crypto/sha512` `MarshalBinary`, the format Distribution keeps under
`_uploads/<id>/hashstates/<alg>/<offset>`:

    sha256: "sha\\x03" | h0..h7 as big-endian uint32 | 64-byte block buffer | big-endian uint64 length
    sha512: "sha\\x07" | h0..h7 as big-endian uint64 | 128-byte block buffer | big-endian uint64 length

The block buffer holds the `length % blocksize` pending bytes first, then zeros.  OpenSSL's
contexts carry the same information: state words, a BIT count split in two halves (Nl low,
Nh high), the pending bytes in raw byte order, and their number (num).

`update` takes any contiguous buffer without copying it, and releases the GIL for buffers of
at least `NOGIL_THRESHOLD` bytes; a per-object lock keeps concurrent callers of one hasher
from interleaving (as hashlib does).

The pure-Python twin with the same API is `fastreg._digest_py`.
"""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

cdef extern from "Python.h":
    Py_UCS4 PyUnicode_READ_CHAR(object s, Py_ssize_t i) noexcept

NOGIL_THRESHOLD = 4096
CAN_RESUME = True

cdef Py_ssize_t _NOGIL = 4096
cdef unsigned long long _MAX_BYTES_256 = (<unsigned long long>1) << 61   # the bit count must fit 64 bits


class RangeNotSatisfiable(ValueError):
    """A syntactically valid Range that selects nothing of the representation (answer 416)."""


# -- byte order helpers ------------------------------------------------------------------------

cdef inline void _st32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v >> 24)
    p[1] = <unsigned char>(v >> 16)
    p[2] = <unsigned char>(v >> 8)
    p[3] = <unsigned char>v


cdef inline void _st64(unsigned char *p, uint64_t v) noexcept nogil:
    _st32(p, <uint32_t>(v >> 32))
    _st32(p + 4, <uint32_t>v)


cdef inline uint32_t _ld32(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline uint64_t _ld64(const unsigned char *p) noexcept nogil:
    return (<uint64_t>_ld32(p) << 32) | <uint64_t>_ld32(p + 4)


cdef inline uint64_t _nbytes256(const SHA256_CTX *c) noexcept nogil:
    return ((<uint64_t>c.Nh << 32) | <uint64_t>c.Nl) >> 3


cdef inline uint64_t _nbytes512(const SHA512_CTX *c) noexcept nogil:
    return (<uint64_t>c.Nh << 61) | (<uint64_t>c.Nl >> 3)


# -- SHA-256 -----------------------------------------------------------------------------------

@cython.final
@cython.auto_pickle(False)
cdef class sha256:
    """hashlib-like SHA-256 whose state can be exported/imported in Go's MarshalBinary format."""

    name = "sha256"
    digest_size = 32
    block_size = 64

    def __cinit__(self, *args, **kwargs):
        SHA256_Init(&self._ctx)

    def __init__(self, data=None):
        if data is not None:
            self.update(data)

    def update(self, data):
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            with self._lock:
                if view.len >= _NOGIL:
                    with nogil:
                        SHA256_Update(&self._ctx, view.buf, <size_t>view.len)
                else:
                    SHA256_Update(&self._ctx, view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)

    def digest(self):
        cdef SHA256_CTX c
        cdef unsigned char out[32]
        with self._lock:
            c = self._ctx
        SHA256_Final(out, &c)
        return PyBytes_FromStringAndSize(<char *>out, 32)

    def hexdigest(self):
        return self.digest().hex()

    def copy(self):
        cdef sha256 other = sha256.__new__(sha256)
        with self._lock:
            other._ctx = self._ctx
        return other

    @property
    def nbytes(self):
        """Total number of bytes hashed so far."""
        with self._lock:
            return _nbytes256(&self._ctx)

    def export_state(self):
        """The running state in Go's crypto/sha256 MarshalBinary format (108 bytes)."""
        cdef SHA256_CTX c
        cdef unsigned char out[108]
        cdef int k
        cdef unsigned int num
        with self._lock:
            c = self._ctx
        num = c.num if c.num <= 64 else 64
        memcpy(out, b"sha\x03", 4)
        for k in range(8):
            _st32(out + 4 + 4 * k, c.h[k])
        memcpy(out + 36, <unsigned char *>c.data, num)
        memset(out + 36 + num, 0, 64 - num)
        _st64(out + 100, _nbytes256(&c))
        return PyBytes_FromStringAndSize(<char *>out, 108)

    def __repr__(self):
        return f"<fastreg._digest.sha256 object, {self.nbytes} bytes hashed>"


def sha256_from_state(data):
    """Resume a SHA-256 from Go's crypto/sha256 MarshalBinary bytes; ValueError if malformed."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef uint64_t n
    cdef int k
    cdef sha256 h
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len != 108:
            raise ValueError(f"sha256 state must be 108 bytes, got {view.len}")
        p = <const unsigned char *>view.buf
        if p[0] != 0x73 or p[1] != 0x68 or p[2] != 0x61 or p[3] != 0x03:
            raise ValueError("not a sha256 state (bad magic)")
        n = _ld64(p + 100)
        if n >= _MAX_BYTES_256:
            raise ValueError("sha256 state length out of range")
        h = sha256.__new__(sha256)
        for k in range(8):
            h._ctx.h[k] = _ld32(p + 4 + 4 * k)
        memcpy(<unsigned char *>h._ctx.data, p + 36, 64)
        h._ctx.Nl = <unsigned int>((n << 3) & 0xFFFFFFFFu)
        h._ctx.Nh = <unsigned int>(n >> 29)
        h._ctx.num = <unsigned int>(n % 64)
        return h
    finally:
        PyBuffer_Release(&view)


# -- SHA-512 -----------------------------------------------------------------------------------

@cython.final
@cython.auto_pickle(False)
cdef class sha512:
    """hashlib-like SHA-512 whose state can be exported/imported in Go's MarshalBinary format."""

    name = "sha512"
    digest_size = 64
    block_size = 128

    def __cinit__(self, *args, **kwargs):
        SHA512_Init(&self._ctx)

    def __init__(self, data=None):
        if data is not None:
            self.update(data)

    def update(self, data):
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            with self._lock:
                if view.len >= _NOGIL:
                    with nogil:
                        SHA512_Update(&self._ctx, view.buf, <size_t>view.len)
                else:
                    SHA512_Update(&self._ctx, view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)

    def digest(self):
        cdef SHA512_CTX c
        cdef unsigned char out[64]
        with self._lock:
            c = self._ctx
        SHA512_Final(out, &c)
        return PyBytes_FromStringAndSize(<char *>out, 64)

    def hexdigest(self):
        return self.digest().hex()

    def copy(self):
        cdef sha512 other = sha512.__new__(sha512)
        with self._lock:
            other._ctx = self._ctx
        return other

    @property
    def nbytes(self):
        """Total number of bytes hashed so far."""
        with self._lock:
            return _nbytes512(&self._ctx)

    def export_state(self):
        """The running state in Go's crypto/sha512 MarshalBinary format (204 bytes)."""
        cdef SHA512_CTX c
        cdef unsigned char out[204]
        cdef int k
        cdef unsigned int num
        with self._lock:
            c = self._ctx
        num = c.num if c.num <= 128 else 128
        memcpy(out, b"sha\x07", 4)
        for k in range(8):
            _st64(out + 4 + 8 * k, c.h[k])
        memcpy(out + 68, c.u.p, num)
        memset(out + 68 + num, 0, 128 - num)
        _st64(out + 196, _nbytes512(&c))
        return PyBytes_FromStringAndSize(<char *>out, 204)

    def __repr__(self):
        return f"<fastreg._digest.sha512 object, {self.nbytes} bytes hashed>"


def sha512_from_state(data):
    """Resume a SHA-512 from Go's crypto/sha512 MarshalBinary bytes; ValueError if malformed."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef uint64_t n
    cdef int k
    cdef sha512 h
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len != 204:
            raise ValueError(f"sha512 state must be 204 bytes, got {view.len}")
        p = <const unsigned char *>view.buf
        if p[0] != 0x73 or p[1] != 0x68 or p[2] != 0x61 or p[3] != 0x07:
            raise ValueError("not a sha512 state (bad magic)")
        n = _ld64(p + 196)
        h = sha512.__new__(sha512)
        for k in range(8):
            h._ctx.h[k] = _ld64(p + 4 + 8 * k)
        memcpy(h._ctx.u.p, p + 68, 128)
        h._ctx.Nl = n << 3
        h._ctx.Nh = n >> 61
        h._ctx.num = <unsigned int>(n % 128)
        return h
    finally:
        PyBuffer_Release(&view)


# -- HTTP ranges -------------------------------------------------------------------------------

cdef inline uint32_t _ch(str s, Py_ssize_t i) noexcept:
    # the code point at s[i] as a plain C integer (compared with ASCII codes below)
    return <uint32_t>PyUnicode_READ_CHAR(s, i)


cdef enum:                  # ASCII codes the parsers compare with
    _SP = 0x20
    _STAR = 0x2A
    _COMMA = 0x2C
    _DASH = 0x2D
    _SLASH = 0x2F
    _EQ = 0x3D


cdef inline bint _ows(uint32_t c) noexcept:
    # OWS = *( SP / HTAB )
    return c == 0x20 or c == 0x09


cdef inline bint _is_bytes_unit(str s, Py_ssize_t i) noexcept:
    # "bytes", ASCII case-insensitive (range-unit is a token compared case-insensitively)
    return ((_ch(s, i) | 0x20) == 0x62 and (_ch(s, i + 1) | 0x20) == 0x79
            and (_ch(s, i + 2) | 0x20) == 0x74 and (_ch(s, i + 3) | 0x20) == 0x65
            and (_ch(s, i + 4) | 0x20) == 0x73)


cdef inline Py_ssize_t _digits(str s, Py_ssize_t i, Py_ssize_t end, unsigned long long *out) noexcept:
    """Read 1..19 ASCII digits at s[i:end].  Returns the index after them, -1 if there are
    none, -2 if there are more than 19 (refused: "absurdly long")."""
    cdef Py_ssize_t j = i
    cdef unsigned long long v = 0
    cdef uint32_t c
    while j < end:
        c = _ch(s, j)
        if c < 0x30 or c > 0x39:
            break
        if j - i == 19:
            return -2
        v = v * 10 + (c - 0x30)
        j += 1
    if j == i:
        return -1
    out[0] = v
    return j


# RFC 9110 §14.1.2 (Byte Ranges) and §14.2 (Range):
#
#   Range            = ranges-specifier
#   ranges-specifier = range-unit "=" range-set
#   range-unit       = token                      ; compared case-insensitively; we know "bytes"
#   range-set        = 1#range-spec
#   range-spec       = int-range / suffix-range / other-range
#   int-range        = first-pos "-" [ last-pos ]
#   first-pos        = 1*DIGIT
#   last-pos         = 1*DIGIT
#   suffix-range     = "-" suffix-length
#   suffix-length    = 1*DIGIT
#   other-range      = 1*( %x21-2B / %x2D-7E )     ; 1*(VCHAR excluding comma)
#
# and §5.6.1.2 for the list: recipients accept `[ element ] *( OWS "," OWS [ element ] )`, i.e.
# empty elements are ignored and OWS may surround commas; the field value itself has its
# leading/trailing OWS removed (§5.5).  No whitespace is allowed around "=" or inside a
# range-spec.  "An int-range is invalid if the last-pos value is present and less than the
# first-pos" (§14.1.1); a server "MAY ignore the Range header field" (§14.2): we do so (None ->
# 200 with the whole representation) for anything invalid, for units other than bytes, for
# other-range, for numbers of more than 19 digits, and for several ranges (no multipart).
# Satisfiable (§14.1.1): an int-range if first-pos < length; a suffix-range if suffix-length > 0
# and the representation is not empty.  Otherwise RangeNotSatisfiable (-> 416).

cpdef tuple parse_range(str value, object size):
    """`Range` header -> (start, end_inclusive), None to ignore it, or RangeNotSatisfiable."""
    cdef long long length = PyNumber_Index(size)   # ints only (no floats), OverflowError past 2**63-1
    cdef Py_ssize_t i = 0, n, j
    cdef uint32_t c
    cdef bint seen = False, suffix = False, has_last = False
    cdef unsigned long long first = 0, last = 0
    if value is None:
        raise TypeError("parse_range() argument 'value' must be str, not None")
    if length < 0:
        raise ValueError("size must be >= 0")
    n = len(value)
    while i < n and _ows(_ch(value, i)):
        i += 1
    while n > i and _ows(_ch(value, n - 1)):
        n -= 1
    if n - i < 6 or not _is_bytes_unit(value, i) or _ch(value, i + 5) != _EQ:
        return None
    i += 6
    while True:
        while i < n and _ows(_ch(value, i)):
            i += 1
        if i >= n:
            break
        c = _ch(value, i)
        if c == _COMMA:
            i += 1
            continue
        if seen:
            return None                     # several ranges: ignore the header
        seen = True
        if c == _DASH:                       # suffix-range
            suffix = True
            i = _digits(value, i + 1, n, &last)
            if i < 0:
                return None
        else:                               # int-range
            i = _digits(value, i, n, &first)
            if i < 0 or i >= n or _ch(value, i) != _DASH:
                return None
            j = _digits(value, i + 1, n, &last)
            if j == -2:
                return None
            if j == -1:
                i += 1
            else:
                has_last = True
                i = j
        while i < n and _ows(_ch(value, i)):
            i += 1
        if i < n and _ch(value, i) != _COMMA:
            return None
    if not seen:
        return None
    if suffix:
        if last == 0 or length == 0:
            raise RangeNotSatisfiable(value)
        if last >= <unsigned long long>length:
            return (0, length - 1)
        return (length - <long long>last, length - 1)
    if has_last and last < first:
        return None
    if first >= <unsigned long long>length:
        raise RangeNotSatisfiable(value)
    if not has_last or last >= <unsigned long long>length:
        return (<long long>first, length - 1)
    return (<long long>first, <long long>last)


# OCI distribution-spec, PATCH of a chunk:  Content-Range: <start>-<end>   (inclusive)
# also accepted: RFC 9110 §14.4  Content-Range = range-unit SP ( range-resp / unsatisfied-range )
#                                range-resp = incl-range "/" ( complete-length / "*" )
#                                incl-range = first-pos "-" last-pos
# (only the range-resp form; a complete-length <= last-pos makes it invalid), and `bytes=<start>-<end>`.

cpdef tuple parse_content_range(str value):
    """Upload `Content-Range` -> (start, end_inclusive); ValueError if malformed or end < start."""
    cdef Py_ssize_t i = 0, n
    cdef uint32_t sep = 0
    cdef unsigned long long start = 0, end = 0, total = 0
    cdef bint has_total = False
    if value is None:
        raise TypeError("parse_content_range() argument 'value' must be str, not None")
    n = len(value)
    while i < n and _ows(_ch(value, i)):
        i += 1
    while n > i and _ows(_ch(value, n - 1)):
        n -= 1
    if n - i >= 6 and _is_bytes_unit(value, i):
        sep = _ch(value, i + 5)
        if sep != _SP and sep != _EQ:
            raise ValueError(f"malformed Content-Range: {value!r}")
        i += 6
    i = _digits(value, i, n, &start)
    if i < 0 or i >= n or _ch(value, i) != _DASH:
        raise ValueError(f"malformed Content-Range: {value!r}")
    i = _digits(value, i + 1, n, &end)
    if i < 0:
        raise ValueError(f"malformed Content-Range: {value!r}")
    if sep == _SP:
        if i >= n or _ch(value, i) != _SLASH:
            raise ValueError(f"malformed Content-Range: {value!r}")
        i += 1
        if i < n and _ch(value, i) == _STAR:
            i += 1
        else:
            i = _digits(value, i, n, &total)
            if i < 0:
                raise ValueError(f"malformed Content-Range: {value!r}")
            has_total = True
    if i != n:
        raise ValueError(f"malformed Content-Range: {value!r}")
    if end < start:
        raise ValueError(f"Content-Range ends before it starts: {value!r}")
    if has_total and total <= end:
        raise ValueError(f"Content-Range extends past its complete length: {value!r}")
    return (start, end)


cpdef str format_content_range(object start, object end, object size):
    """`Content-Range` of a 206 response: "bytes start-end/size"."""
    cdef long long first = PyNumber_Index(start)
    cdef long long last = PyNumber_Index(end)
    cdef long long length = PyNumber_Index(size)
    if first < 0 or last < first or last >= length:
        raise ValueError(f"invalid range {first}-{last} of {length} bytes")
    return f"bytes {first}-{last}/{length}"
