"""Pure-Python twin of the compiled `fastreg._digest` engine (same names, same behaviour).

Hashing is hashlib's; hashlib cannot export or import a running state, so `export_state()`
returns None and `sha256_from_state`/`sha512_from_state` validate their input exactly like the
compiled engine and then raise ValueError: callers re-hash from storage instead (the saved
state is a cache, never the truth).  The range parsers implement the same grammar as the
compiled ones (RFC 9110 §14.1.2, quoted in `_digest.pyx`); the test suite checks both agree.
"""
from __future__ import annotations

import hashlib
import operator
import re
import threading
from typing import Any

NOGIL_THRESHOLD = 4096
CAN_RESUME = False

_LL_MAX = (1 << 63) - 1


class RangeNotSatisfiable(ValueError):
    """A syntactically valid Range that selects nothing of the representation (answer 416)."""


# -- hashers -----------------------------------------------------------------------------------

class _HashlibHasher:
    __slots__ = ("_h", "_lock", "_n")
    name: str = ""
    digest_size: int = 0
    block_size: int = 0

    def __init__(self, data: Any = None) -> None:
        self._h = hashlib.new(self.name)
        self._n = 0
        self._lock = threading.Lock()         # keeps nbytes exact when threads share a hasher
        if data is not None:
            self.update(data)

    def update(self, data: Any) -> None:
        with self._lock:
            self._h.update(data)              # TypeError/BufferError exactly as hashlib
            self._n += memoryview(data).nbytes

    def digest(self) -> bytes:
        return self._h.digest()

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def copy(self) -> Any:
        other = type(self).__new__(type(self))
        with self._lock:
            other._h = self._h.copy()
            other._n = self._n
        other._lock = threading.Lock()
        return other

    @property
    def nbytes(self) -> int:
        """Total number of bytes hashed so far."""
        return self._n

    def export_state(self) -> bytes | None:
        """hashlib cannot export its state: always None (re-hash from storage instead)."""
        return None

    def __repr__(self) -> str:
        return f"<fastreg._digest_py.{self.name} object, {self._n} bytes hashed>"


class sha256(_HashlibHasher):
    __slots__ = ()
    name = "sha256"
    digest_size = 32
    block_size = 64


class sha512(_HashlibHasher):
    __slots__ = ()
    name = "sha512"
    digest_size = 64
    block_size = 128


def _check_state(data: Any, size: int, magic: bytes, alg: str) -> int:
    b = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if len(b) != size:
        raise ValueError(f"{alg} state must be {size} bytes, got {len(b)}")
    if bytes(b[:4]) != magic:
        raise ValueError(f"not a {alg} state (bad magic)")
    return int.from_bytes(b[-8:], "big")


def sha256_from_state(data: Any) -> sha256:
    """Validates like the compiled engine, then refuses: hashlib cannot resume a state."""
    if _check_state(data, 108, b"sha\x03", "sha256") >= 1 << 61:
        raise ValueError("sha256 state length out of range")
    raise ValueError("the pure-Python digest engine cannot resume a sha256 state")


def sha512_from_state(data: Any) -> sha512:
    """Validates like the compiled engine, then refuses: hashlib cannot resume a state."""
    _check_state(data, 204, b"sha\x07", "sha512")
    raise ValueError("the pure-Python digest engine cannot resume a sha512 state")


# -- HTTP ranges (grammar quoted in _digest.pyx) -------------------------------------------------

_OWS = " \t"
_RANGE_SPEC = re.compile(r"([0-9]{1,19})-([0-9]{0,19})|-([0-9]{1,19})")
_CONTENT_RANGE = re.compile(r"(?:bytes([ =]))?([0-9]{1,19})-([0-9]{1,19})(?:/([0-9]{1,19}|\*))?",
                            re.IGNORECASE | re.ASCII)


def _long_long(x: Any) -> int:
    v: int = operator.index(x)
    if not -_LL_MAX - 1 <= v <= _LL_MAX:
        raise OverflowError("Python int too large to convert to C long long")
    return v


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """`Range` header -> (start, end_inclusive), None to ignore it, or RangeNotSatisfiable."""
    size = _long_long(size)
    if not isinstance(value, str):
        raise TypeError(f"parse_range() argument 'value' must be str, not {type(value).__name__}")
    if size < 0:
        raise ValueError("size must be >= 0")
    v = value.strip(_OWS)
    if len(v) < 6 or v[5] != "=" or not v[:5].isascii() or v[:5].lower() != "bytes":
        return None
    specs = [p for p in (e.strip(_OWS) for e in v[6:].split(",")) if p]
    if len(specs) != 1:
        return None                           # none, or several ranges: ignore the header
    m = _RANGE_SPEC.fullmatch(specs[0])
    if m is None:
        return None
    first, last, suffix = m.groups()
    if suffix is not None:
        n = int(suffix)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(value)
        return (max(size - n, 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(value)
    end = size - 1 if not last else min(int(last), size - 1)
    return (start, end)


def parse_content_range(value: str) -> tuple[int, int]:
    """Upload `Content-Range` -> (start, end_inclusive); ValueError if malformed or end < start."""
    if not isinstance(value, str):
        raise TypeError(f"parse_content_range() argument 'value' must be str, not {type(value).__name__}")
    m = _CONTENT_RANGE.fullmatch(value.strip(_OWS))
    if m is None:
        raise ValueError(f"malformed Content-Range: {value!r}")
    sep, first, last, total = m.groups()
    if (sep == " ") != (total is not None):
        raise ValueError(f"malformed Content-Range: {value!r}")
    start, end = int(first), int(last)
    if end < start:
        raise ValueError(f"Content-Range ends before it starts: {value!r}")
    if total is not None and total != "*" and int(total) <= end:
        raise ValueError(f"Content-Range extends past its complete length: {value!r}")
    return (start, end)


def format_content_range(start: int, end: int, size: int) -> str:
    """`Content-Range` of a 206 response: "bytes start-end/size"."""
    start, end, size = _long_long(start), _long_long(end), _long_long(size)
    if start < 0 or end < start or end >= size:
        raise ValueError(f"invalid range {start}-{end} of {size} bytes")
    return f"bytes {start}-{end}/{size}"
