"""Digests: the grammar, the registered algorithms, and resumable hashers.

Everything in fastreg that parses, computes or resumes a digest goes through this module.
It runs on one of two engines with the same API:

* `fastreg._digest` (Cython over OpenSSL): SHA-256/512 whose running state can be exported and
  imported in Go's crypto/sha256 / crypto/sha512 `MarshalBinary` format, the format
  Distribution keeps per upload offset (`hashstates/sha256/<offset>`), so an upload can resume
  on any replica without re-reading its data;
* `fastreg._digest_py` (hashlib): no state export; callers re-hash from storage instead.

The compiled engine is used unless FASTREG_NO_EXTENSIONS=1 or it cannot be imported;
`EXTENSION` says which.  A saved state is a cache, never the truth: `hasher_from_state`
returns None whenever it cannot resume, and the caller re-hashes the stored bytes.

Digest grammar (OCI distribution-spec, "Digests"):

    digest    ::= algorithm ":" encoded
    algorithm ::= component (separator component)*
    component ::= [a-z0-9]+
    separator ::= [+._-]
    encoded   ::= [a-zA-Z0-9=_-]+

Registered algorithms: sha256 and sha512 (lowercase hex of 64 / 128 characters) and, when
enabled, blake3 (64 lowercase hex).  A digest that breaks the grammar or its algorithm's
encoding is an `InvalidDigest`; a well-formed digest of another algorithm is an
`UnsupportedDigest`.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, NamedTuple, Protocol

from . import _digest_py, engines

engine, EXTENSION = engines.load("_digest", _digest_py)
"""The active engine module, and whether it is the compiled one."""

parse_range = engine.parse_range
parse_content_range = engine.parse_content_range
format_content_range = engine.format_content_range
RangeNotSatisfiable: type[ValueError] = engine.RangeNotSatisfiable

MAX_DIGEST_LENGTH = 256


class Digest(NamedTuple):
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class InvalidDigest(ValueError):
    """The string is not a digest (grammar, or the encoding its algorithm requires)."""


class UnsupportedDigest(ValueError):
    """A well-formed digest of an algorithm this registry does not (or not now) support."""


class Hasher(Protocol):
    name: str

    def update(self, data: Any, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...
    def export_state(self) -> bytes | None: ...


# -- parsing -----------------------------------------------------------------------------------

_GRAMMAR = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_new_tuple = tuple.__new__                    # Digest(...) without NamedTuple.__new__'s Python frame
_ENCODED = {
    "sha256": re.compile(r"[0-9a-f]{64}"),
    "sha512": re.compile(r"[0-9a-f]{128}"),
    "blake3": re.compile(r"[0-9a-f]{64}"),
}


def parse_digest(s: str, *, allow_blake3: bool = False) -> Digest:
    """Parse and validate `algorithm:encoded`; InvalidDigest or UnsupportedDigest otherwise."""
    if _SHA256.fullmatch(s) is not None:     # the common case, on every request
        return _new_tuple(Digest, ("sha256", s[7:]))
    if len(s) > MAX_DIGEST_LENGTH:
        raise InvalidDigest(f"digest longer than {MAX_DIGEST_LENGTH} characters")
    m = _GRAMMAR.fullmatch(s)
    if m is None:
        raise InvalidDigest(f"invalid digest {s!r}")
    algorithm, encoded = m.groups()
    pattern = _ENCODED.get(algorithm)
    if pattern is None or (algorithm == "blake3" and not allow_blake3):
        raise UnsupportedDigest(f"unsupported digest algorithm {algorithm!r}")
    if pattern.fullmatch(encoded) is None:
        raise InvalidDigest(f"invalid {algorithm} digest {s!r}")
    return Digest(algorithm, encoded)


# -- hashers -----------------------------------------------------------------------------------

class _Blake3:
    """blake3.blake3 with the hasher interface (single-threaded; no state export)."""
    __slots__ = ("_h", "digest", "update")
    name = "blake3"
    digest_size = 32

    def __init__(self, h: Any = None) -> None:
        if h is None:
            import blake3
            h = blake3.blake3(max_threads=1)
        self._h = h
        self.update = h.update
        self.digest = h.digest

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())

    def copy(self) -> _Blake3:
        return _Blake3(self._h.copy())

    def export_state(self) -> None:
        return None


_STATE_SIZE = {"sha256": (108, b"sha\x03"), "sha512": (204, b"sha\x07")}


def new_hasher(algorithm: str) -> Any:
    """A fresh hasher (update/digest/hexdigest/copy/export_state) for `algorithm`."""
    if algorithm == "sha256":
        return engine.sha256()
    if algorithm == "sha512":
        return engine.sha512()
    if algorithm == "blake3":
        return _Blake3()
    raise UnsupportedDigest(f"unsupported digest algorithm {algorithm!r}")


def hasher_from_state(algorithm: str, state: bytes) -> Any | None:
    """Resume a hasher from a Go MarshalBinary state; None if that is not possible here
    (pure engine, algorithm without state export, malformed state): re-hash instead."""
    try:
        if algorithm == "sha256":
            return engine.sha256_from_state(state)
        if algorithm == "sha512":
            return engine.sha512_from_state(state)
    except (ValueError, TypeError, BufferError):
        return None
    return None


def state_nbytes(algorithm: str, state: bytes) -> int | None:
    """How many bytes a Go MarshalBinary state has hashed (its length field), or None."""
    spec = _STATE_SIZE.get(algorithm)
    if spec is None or len(state) != spec[0] or state[:4] != spec[1]:
        return None
    return int.from_bytes(state[-8:], "big")


def digest_bytes(data: Any, algorithm: str = "sha256") -> Digest:
    """The digest of an in-memory buffer."""
    if algorithm == "sha256":
        return Digest("sha256", hashlib.sha256(data).hexdigest())
    h = new_hasher(algorithm)
    h.update(data)
    return Digest(algorithm, h.hexdigest())


__all__ = [
    "EXTENSION", "Digest", "Hasher", "InvalidDigest", "RangeNotSatisfiable", "UnsupportedDigest",
    "digest_bytes", "engine", "format_content_range", "hasher_from_state", "new_hasher",
    "parse_content_range", "parse_digest", "parse_range", "state_nbytes",
]
