"""fastreg.digest and its two engines (compiled fastreg._digest, pure fastreg._digest_py).

Every engine-level test runs over both twins; every fastreg.digest test runs over a copy of
the module loaded with each engine.  Go-format compatibility is checked against a small
pure-Python SHA-256/SHA-512 written here from FIPS 180-4 (constants derived from the primes),
which exposes its internal state after whole blocks the way Go's MarshalBinary does.
"""
from __future__ import annotations

import array
import hashlib
import importlib.util
import math
import os
import re
import threading
from types import ModuleType
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastreg.digest
from fastreg import _digest_py

_compiled: ModuleType | None
try:
    from fastreg import _digest as _compiled  # type: ignore[attr-defined, unused-ignore]
except ImportError:
    if os.environ.get("FASTREG_NO_EXTENSIONS") != "1":
        raise ImportError("fastreg._digest is not built: run `python setup.py build_ext --inplace`") from None
    _compiled = None

ENGINE_MODULES: list[ModuleType] = [_digest_py] if _compiled is None else [_compiled, _digest_py]
ENGINES = [pytest.param(m, id="pure" if m is _digest_py else "compiled") for m in ENGINE_MODULES]

HASHES = ["sha256", "sha512"]
SPLITS = [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 4095, 4096, 4097, 10_000]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def _load_digest_module(pure: bool) -> ModuleType:
    """A private copy of fastreg.digest, imported with or without FASTREG_NO_EXTENSIONS."""
    spec = importlib.util.find_spec("fastreg.digest")
    assert spec is not None and spec.loader is not None
    old = os.environ.get("FASTREG_NO_EXTENSIONS")
    os.environ["FASTREG_NO_EXTENSIONS"] = "1" if pure else "0"
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if old is None:
            del os.environ["FASTREG_NO_EXTENSIONS"]
        else:
            os.environ["FASTREG_NO_EXTENSIONS"] = old
    return mod


PURE_FLAGS: list[bool] = [True] if _compiled is None else [False, True]
DIGEST_MODULES = [pytest.param(pure, id="pure" if pure else "compiled") for pure in PURE_FLAGS]


@pytest.fixture(params=DIGEST_MODULES)
def dg(request: pytest.FixtureRequest) -> ModuleType:
    mod = _load_digest_module(pure=request.param)
    assert mod.EXTENSION is (not request.param)
    assert mod.engine is (_digest_py if request.param else _compiled)
    return mod


def blob(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


# -- a reference SHA-2 that exposes Go's MarshalBinary state -------------------------------------

def _primes(n: int) -> list[int]:
    out: list[int] = []
    k = 2
    while len(out) < n:
        if all(k % p for p in out if p * p <= k):
            out.append(k)
        k += 1
    return out


def _icbrt(x: int) -> int:
    lo, hi = 0, 1 << (x.bit_length() // 3 + 2)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid ** 3 <= x:
            lo = mid
        else:
            hi = mid - 1
    return lo


class RefSHA2:
    """FIPS 180-4 SHA-256 / SHA-512: constants are the first bits of the fractional parts of
    the square roots (IV) and cube roots (K) of the first primes, computed exactly."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        w = self.w = 32 if bits == 256 else 64
        self.mask = (1 << w) - 1
        self.block = 64 if bits == 256 else 128
        rounds = 64 if bits == 256 else 80
        self.k = [_icbrt(p << (3 * w)) & self.mask for p in _primes(rounds)]
        self.h = [math.isqrt(p << (2 * w)) & self.mask for p in _primes(8)]
        if bits == 256:
            self.rot = ((2, 13, 22), (6, 11, 25), (7, 18, 3), (17, 19, 10))
        else:
            self.rot = ((28, 34, 39), (14, 18, 41), (1, 8, 7), (19, 61, 6))
        self.buf = b""
        self.length = 0

    def _rotr(self, x: int, n: int) -> int:
        return ((x >> n) | (x << (self.w - n))) & self.mask

    def _compress(self, block: bytes) -> None:
        w, m, r = self.w // 8, self.mask, self._rotr
        (s0a, s0b, s0c), (s1a, s1b, s1c), (g0a, g0b, g0s), (g1a, g1b, g1s) = self.rot
        ws = [int.from_bytes(block[i:i + w], "big") for i in range(0, self.block, w)]
        for t in range(16, len(self.k)):
            x, y = ws[t - 15], ws[t - 2]
            sig0 = r(x, g0a) ^ r(x, g0b) ^ (x >> g0s)
            sig1 = r(y, g1a) ^ r(y, g1b) ^ (y >> g1s)
            ws.append((ws[t - 16] + sig0 + ws[t - 7] + sig1) & m)
        a, b, c, d, e, f, g, h = self.h
        for t in range(len(self.k)):
            t1 = (h + (r(e, s1a) ^ r(e, s1b) ^ r(e, s1c)) + ((e & f) ^ (~e & g)) + self.k[t] + ws[t]) & m
            t2 = ((r(a, s0a) ^ r(a, s0b) ^ r(a, s0c)) + ((a & b) ^ (a & c) ^ (b & c))) & m
            a, b, c, d, e, f, g, h = (t1 + t2) & m, a, b, c, (d + t1) & m, e, f, g
        self.h = [(x + y) & m for x, y in zip(self.h, (a, b, c, d, e, f, g, h), strict=False)]

    def update(self, data: bytes) -> None:
        self.length += len(data)
        self.buf += data
        while len(self.buf) >= self.block:
            self._compress(self.buf[:self.block])
            self.buf = self.buf[self.block:]

    def go_state(self) -> bytes:
        """Go's crypto/sha256 (sha512) MarshalBinary: magic, words, padded buffer, length."""
        magic = b"sha\x03" if self.bits == 256 else b"sha\x07"
        words = b"".join(x.to_bytes(self.w // 8, "big") for x in self.h)
        return magic + words + self.buf.ljust(self.block, b"\0") + (self.length % 2**64).to_bytes(8, "big")

    def digest(self) -> bytes:
        lenfield = 8 if self.bits == 256 else 16
        saved = (list(self.h), self.buf, self.length)
        tail = self.buf + b"\x80"
        tail += b"\0" * ((-len(tail) - lenfield) % self.block)
        tail += ((self.length * 8) % 2 ** (8 * lenfield)).to_bytes(lenfield, "big")
        for i in range(0, len(tail), self.block):
            self._compress(tail[i:i + self.block])
        out = b"".join(x.to_bytes(self.w // 8, "big") for x in self.h)
        self.h, self.buf, self.length = saved
        return out


@pytest.mark.parametrize("alg", HASHES)
@pytest.mark.parametrize("n", [0, 3, 55, 56, 64, 119, 200, 300])
def test_reference_sha2_agrees_with_hashlib(engine: ModuleType, alg: str, n: int) -> None:
    # The oracle itself must be right before it judges the engines' states.
    ref = RefSHA2(256 if alg == "sha256" else 512)
    data = blob(n)
    ref.update(data)
    h = getattr(engine, alg)(data)
    assert ref.digest() == h.digest() == hashlib.new(alg, data).digest()


# -- hashing -------------------------------------------------------------------------------------

def test_known_vectors(engine: ModuleType) -> None:
    assert engine.sha256().hexdigest() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert engine.sha256(b"abc").hexdigest() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert engine.sha512(b"abc").hexdigest() == (
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")


@pytest.mark.parametrize("alg,digest_size,block_size", [("sha256", 32, 64), ("sha512", 64, 128)])
def test_attributes(engine: ModuleType, alg: str, digest_size: int, block_size: int) -> None:
    h = getattr(engine, alg)()
    assert (h.name, h.digest_size, h.block_size) == (alg, digest_size, block_size)
    assert len(h.digest()) == digest_size and len(h.hexdigest()) == 2 * digest_size


@pytest.mark.parametrize("alg", HASHES)
def test_update_accepts_buffers(engine: ModuleType, alg: str) -> None:
    data = blob(10_000)
    h = getattr(engine, alg)()
    h.update(data[:100])
    h.update(bytearray(data[100:200]))
    h.update(memoryview(data)[200:5000])
    h.update(array.array("B", data[5000:6000]))
    h.update(memoryview(bytearray(data[6000:]))[:])
    assert h.nbytes == len(data)
    assert h.digest() == hashlib.new(alg, data).digest()


@pytest.mark.parametrize("alg", HASHES)
def test_update_rejects_what_hashlib_rejects(engine: ModuleType, alg: str) -> None:
    h = getattr(engine, alg)()
    with pytest.raises(TypeError):
        h.update("text")
    with pytest.raises(TypeError):
        h.update(None)
    with pytest.raises(BufferError):
        h.update(memoryview(b"abcdef")[::2])
    with pytest.raises(BufferError):
        hashlib.new(alg).update(memoryview(b"abcdef")[::2])
    assert h.nbytes == 0 and h.digest() == hashlib.new(alg).digest()


@pytest.mark.parametrize("alg", HASHES)
def test_copy_is_independent_and_digest_does_not_finalize(engine: ModuleType, alg: str) -> None:
    h = getattr(engine, alg)(b"hello ")
    c = h.copy()
    assert type(c) is type(h)
    first = h.digest()
    h.update(b"world")
    c.update(b"there")
    assert first == hashlib.new(alg, b"hello ").digest()
    assert h.digest() == hashlib.new(alg, b"hello world").digest()
    assert c.digest() == hashlib.new(alg, b"hello there").digest()
    assert (h.nbytes, c.nbytes) == (11, 11)


@pytest.mark.parametrize("alg", HASHES)
@pytest.mark.parametrize("cut", SPLITS)
def test_split_points_equal_hashlib(engine: ModuleType, alg: str, cut: int) -> None:
    data = blob(10_000)
    h = getattr(engine, alg)()
    h.update(data[:cut])
    h.update(data[cut:])
    assert h.hexdigest() == hashlib.new(alg, data).hexdigest()


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=20_000), st_data=st.data())
def test_arbitrary_splits_equal_hashlib(data: bytes, st_data: st.DataObject) -> None:
    cuts = sorted(st_data.draw(st.lists(st.integers(0, len(data)), max_size=8)))
    for eng in ENGINE_MODULES:
        for alg in HASHES:
            h = getattr(eng, alg)()
            prev = 0
            for c in [*cuts, len(data)]:
                h.update(data[prev:c])
                prev = c
            assert h.digest() == hashlib.new(alg, data).digest()
            assert h.nbytes == len(data)


@pytest.mark.parametrize("alg", HASHES)
def test_threads_sharing_one_hasher_do_not_interleave(engine: ModuleType, alg: str) -> None:
    # Identical chunks: whatever the order, the result is the hash of their concatenation --
    # unless two updates interleave inside the context (the lock must prevent it).
    chunk = blob(1 << 16, seed=3)
    h = getattr(engine, alg)()
    per_thread, threads = 16, 4

    def work() -> None:
        for _ in range(per_thread):
            h.update(chunk)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert h.nbytes == len(chunk) * per_thread * threads
    assert h.digest() == hashlib.new(alg, chunk * (per_thread * threads)).digest()


# -- state export / import (Go's MarshalBinary) ---------------------------------------------------

SHA256_IV = bytes.fromhex("6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19")


def test_fresh_sha256_state_is_go_initial_state(engine: ModuleType) -> None:
    # Go: sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
    expected = b"sha\x03" + SHA256_IV + bytes(64) + bytes(8)
    assert len(expected) == 108
    state = engine.sha256().export_state()
    if engine.CAN_RESUME:
        assert state == expected
        assert engine.sha256_from_state(expected).hexdigest() == hashlib.sha256().hexdigest()
    else:
        assert state is None
        with pytest.raises(ValueError, match="cannot resume"):
            engine.sha256_from_state(expected)


@pytest.mark.parametrize("alg", HASHES)
@pytest.mark.parametrize("n", [0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 200, 1000])
def test_export_state_is_go_format_byte_for_byte(engine: ModuleType, alg: str, n: int) -> None:
    ref = RefSHA2(256 if alg == "sha256" else 512)
    data = blob(n, seed=n)
    ref.update(data)
    expected = ref.go_state()
    assert len(expected) == (108 if alg == "sha256" else 204)
    h = getattr(engine, alg)(data)
    if engine.CAN_RESUME:
        assert h.export_state() == expected
        resumed = getattr(engine, f"{alg}_from_state")(expected)
        assert resumed.nbytes == n
        assert resumed.export_state() == expected
        resumed.update(b"tail")
        assert resumed.digest() == hashlib.new(alg, data + b"tail").digest()
    else:
        assert h.export_state() is None
        with pytest.raises(ValueError, match="cannot resume"):
            getattr(engine, f"{alg}_from_state")(expected)


@pytest.mark.parametrize("alg", HASHES)
@pytest.mark.parametrize("cut", SPLITS)
def test_round_trip_at_split_points(engine: ModuleType, alg: str, cut: int) -> None:
    data = blob(12_000, seed=1)
    h = getattr(engine, alg)(data[:cut])
    state = h.export_state()
    if not engine.CAN_RESUME:
        assert state is None
        return
    r = getattr(engine, f"{alg}_from_state")(state)
    assert r.nbytes == cut and r.export_state() == state
    r.update(data[cut:])
    assert r.hexdigest() == hashlib.new(alg, data).hexdigest()
    assert h.hexdigest() == hashlib.new(alg, data[:cut]).hexdigest()   # the source is untouched


@pytest.mark.skipif(_compiled is None, reason="needs the compiled engine")
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=5000), st_data=st.data(), alg=st.sampled_from(HASHES))
def test_round_trip_at_arbitrary_offsets(data: bytes, st_data: st.DataObject, alg: str) -> None:
    assert _compiled is not None
    cuts = sorted(st_data.draw(st.lists(st.integers(0, len(data)), min_size=1, max_size=5)))
    h = getattr(_compiled, alg)()
    prev = 0
    for c in cuts:
        h.update(data[prev:c])
        prev = c
        state = h.export_state()
        assert fastreg.digest.state_nbytes(alg, state) == c
        h = getattr(_compiled, f"{alg}_from_state")(state)
    h.update(data[prev:])
    assert h.digest() == hashlib.new(alg, data).digest()


@pytest.mark.parametrize("alg,extra", [("sha256", 2**35), ("sha256", 2**61 - 2**12), ("sha512", 2**62),
                                       ("sha512", 2**64 - 2**12)])
def test_import_large_lengths_uses_the_high_count_word(engine: ModuleType, alg: str, extra: int) -> None:
    # A state claiming `extra` more bytes (a multiple of the block size) than the data really
    # had: the final padding must encode the full 64-bit (sha512: Go keeps 64) length.
    ref = RefSHA2(256 if alg == "sha256" else 512)
    ref.update(blob(300))
    ref.length += extra
    state = ref.go_state()
    if not engine.CAN_RESUME:
        with pytest.raises(ValueError):
            getattr(engine, f"{alg}_from_state")(state)
        return
    h = getattr(engine, f"{alg}_from_state")(state)
    assert h.nbytes == ref.length
    assert h.export_state() == state
    assert h.digest() == ref.digest()


def test_sha256_length_beyond_64_bit_bit_count_is_refused(engine: ModuleType) -> None:
    state = b"sha\x03" + SHA256_IV + bytes(64) + (2**61).to_bytes(8, "big")
    with pytest.raises(ValueError, match="out of range"):
        engine.sha256_from_state(state)


@pytest.mark.parametrize("alg", HASHES)
def test_import_ignores_stale_bytes_after_the_pending_ones(engine: ModuleType, alg: str) -> None:
    ref = RefSHA2(256 if alg == "sha256" else 512)
    data = blob(70)
    ref.update(data)
    state = bytearray(ref.go_state())
    off = 4 + 8 * ref.w // 8 + len(ref.buf)
    state[off:off + 20] = b"\xee" * 20                    # garbage where Go writes zeros
    if not engine.CAN_RESUME:
        with pytest.raises(ValueError):
            getattr(engine, f"{alg}_from_state")(bytes(state))
        return
    h = getattr(engine, f"{alg}_from_state")(bytes(state))
    assert h.export_state() == ref.go_state()            # exported with the zero padding again
    h.update(b"more")
    assert h.digest() == hashlib.new(alg, data + b"more").digest()


@pytest.mark.parametrize("alg,good", [("sha256", b"sha\x03" + bytes(104)), ("sha512", b"sha\x07" + bytes(200))])
def test_from_state_rejects_malformed(engine: ModuleType, alg: str, good: bytes) -> None:
    load = getattr(engine, f"{alg}_from_state")
    bad = [good[:-1], good + b"\0", b"", b"sha\x02" + good[4:], b"SHA" + good[3:],
           (b"sha\x07" if alg == "sha256" else b"sha\x03") + good[4:]]
    for b in bad:
        with pytest.raises(ValueError):
            load(b)
    with pytest.raises(TypeError):
        load("sha\x03" + "\0" * 104)
    if engine.CAN_RESUME:
        assert load(bytearray(good)).nbytes == 0 and load(memoryview(good)).nbytes == 0


# -- fastreg.digest: the public API over each engine ---------------------------------------------

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2


def test_public_module_uses_the_selected_engine() -> None:
    pure = os.environ.get("FASTREG_NO_EXTENSIONS") == "1"
    assert fastreg.digest.EXTENSION is (not pure)
    assert fastreg.digest.engine is (_digest_py if pure else _compiled)


def test_reexports_come_from_the_engine(dg: ModuleType) -> None:
    for name in ("parse_range", "parse_content_range", "format_content_range", "RangeNotSatisfiable"):
        assert getattr(dg, name) is getattr(dg.engine, name)
    assert issubclass(dg.RangeNotSatisfiable, ValueError)


def test_digest_tuple(dg: ModuleType) -> None:
    d = dg.Digest("sha256", HEX64)
    assert str(d) == f"sha256:{HEX64}"
    assert d == ("sha256", HEX64) and d.algorithm == "sha256" and d.hex == HEX64


@pytest.mark.parametrize("s,allow,expected", [
    (f"sha256:{HEX64}", False, ("sha256", HEX64)),
    (f"sha512:{HEX128}", False, ("sha512", HEX128)),
    (f"blake3:{HEX64}", True, ("blake3", HEX64)),
])
def test_parse_digest_valid(dg: ModuleType, s: str, allow: bool, expected: tuple[str, str]) -> None:
    d = dg.parse_digest(s, allow_blake3=allow)
    assert d == expected and type(d) is dg.Digest and str(d) == s


@pytest.mark.parametrize("s", [
    f"sha256:{HEX64.upper()}", f"sha256:{HEX64[:-1]}", f"sha256:{HEX64}0", f"sha256:{HEX64[:-1]}g",
    f"sha512:{HEX64}", f"sha512:{HEX128[:-2]}AB", f"SHA256:{HEX64}", f"sha256:{HEX64}\n",
    f" sha256:{HEX64}", f"sha256 :{HEX64}", "sha256", "sha256:", f":{HEX64}", "", "sha256::abc",
    "a+:b", "a..b:c", "-a:b", "a:b c", "a:b/c", f"sha256:{HEX64}:x",
    "x" * 200 + ":" + "a" * 57, f"blake3:{HEX64.upper()}",
])
def test_parse_digest_invalid(dg: ModuleType, s: str) -> None:
    allow = s.startswith("blake3")
    with pytest.raises(dg.InvalidDigest):
        dg.parse_digest(s, allow_blake3=allow)
    assert not issubclass(dg.InvalidDigest, dg.UnsupportedDigest)


@pytest.mark.parametrize("s", ["md5:d41d8cd98f00b204e9800998ecf8427e", f"sha384:{HEX64}", "a+b.c_d-e:Zz=_-",
                               f"blake3:{HEX64}", "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"])
def test_parse_digest_unsupported(dg: ModuleType, s: str) -> None:
    with pytest.raises(dg.UnsupportedDigest):
        dg.parse_digest(s)


def test_parse_digest_length_limit(dg: ModuleType) -> None:
    ok = "a" * 100 + ":" + "b" * 155                        # 256 characters: grammatical, unknown
    with pytest.raises(dg.UnsupportedDigest):
        dg.parse_digest(ok)
    with pytest.raises(dg.InvalidDigest):
        dg.parse_digest(ok + "b")


_GRAMMAR = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
_REGISTERED = {"sha256": r"[a-f0-9]{64}", "sha512": r"[a-f0-9]{128}", "blake3": r"[a-f0-9]{64}"}


def _oracle(s: str, allow_blake3: bool) -> str:
    if len(s) > 256 or re.fullmatch(_GRAMMAR, s) is None:
        return "invalid"
    alg, enc = s.split(":", 1)
    if alg not in _REGISTERED or (alg == "blake3" and not allow_blake3):
        return "unsupported"
    return "ok" if re.fullmatch(_REGISTERED[alg], enc) else "invalid"


def _outcome(dg: ModuleType, s: str, allow: bool) -> str:
    try:
        d = dg.parse_digest(s, allow_blake3=allow)
    except dg.UnsupportedDigest:
        return "unsupported"
    except dg.InvalidDigest:
        return "invalid"
    assert str(d) == s
    return "ok"


_digest_strings = st.one_of(
    st.from_regex(_GRAMMAR, fullmatch=True),
    st.from_regex(r"(sha256|sha512|blake3):[a-fA-F0-9]{60,130}", fullmatch=True),
    st.builds(lambda a, h: f"{a}:{h}", st.sampled_from(["sha256", "blake3"]),
              st.text("0123456789abcdef", min_size=64, max_size=64)),
    st.builds(lambda h: f"sha512:{h}", st.text("0123456789abcdef", min_size=128, max_size=128)),
    st.text(max_size=80),
    st.text("sha256:+._-=0123456789abcdefABCDEF \n", max_size=80),
)


_DG = {pure: _load_digest_module(pure=pure) for pure in PURE_FLAGS}


@settings(max_examples=400, deadline=None)
@given(s=_digest_strings, allow=st.booleans())
def test_parse_digest_follows_the_grammar(s: str, allow: bool) -> None:
    expected = _oracle(s, allow)
    for pure in PURE_FLAGS:
        assert _outcome(_DG[pure], s, allow) == expected


@pytest.mark.parametrize("alg", ["sha256", "sha512", "blake3"])
def test_new_hasher(dg: ModuleType, alg: str) -> None:
    data = blob(50_000)
    h = dg.new_hasher(alg)
    assert h.name == alg
    h.update(data[:7])
    c = h.copy()
    h.update(data[7:])
    c.update(b"x")
    if alg == "blake3":
        want, want_c = blake3.blake3(data).hexdigest(), blake3.blake3(data[:7] + b"x").hexdigest()
    else:
        want, want_c = hashlib.new(alg, data).hexdigest(), hashlib.new(alg, data[:7] + b"x").hexdigest()
    assert h.hexdigest() == want and h.digest() == bytes.fromhex(want)
    assert c.hexdigest() == want_c
    assert dg.digest_bytes(data, alg) == (alg, want)


def test_new_hasher_unknown(dg: ModuleType) -> None:
    for alg in ("md5", "sha384", "SHA256", ""):
        with pytest.raises(dg.UnsupportedDigest):
            dg.new_hasher(alg)


def test_digest_bytes_default_is_sha256(dg: ModuleType) -> None:
    assert dg.digest_bytes(b"abc") == ("sha256", hashlib.sha256(b"abc").hexdigest())
    assert str(dg.digest_bytes(bytearray(b""))) == f"sha256:{hashlib.sha256().hexdigest()}"


@pytest.mark.parametrize("alg", HASHES)
def test_export_and_resume_through_the_public_api(dg: ModuleType, alg: str) -> None:
    data = blob(5000)
    h = dg.new_hasher(alg)
    h.update(data[:1234])
    state = h.export_state()
    if dg.EXTENSION:
        assert isinstance(state, bytes) and dg.state_nbytes(alg, state) == 1234
        r = dg.hasher_from_state(alg, state)
        assert r is not None
        r.update(data[1234:])
        assert r.hexdigest() == hashlib.new(alg, data).hexdigest()
    else:
        assert state is None
        ref = RefSHA2(256 if alg == "sha256" else 512)
        ref.update(data[:300])
        assert dg.state_nbytes(alg, ref.go_state()) == 300       # readable even when not resumable
        assert dg.hasher_from_state(alg, ref.go_state()) is None


def test_hasher_from_state_returns_none_when_impossible(dg: ModuleType) -> None:
    good256 = b"sha\x03" + SHA256_IV + bytes(72)
    assert dg.hasher_from_state("sha256", good256[:-1]) is None
    assert dg.hasher_from_state("sha512", good256) is None
    assert dg.hasher_from_state("blake3", good256) is None
    assert dg.hasher_from_state("md5", good256) is None
    assert dg.new_hasher("blake3").export_state() is None
    assert (dg.hasher_from_state("sha256", good256) is not None) is dg.EXTENSION


def test_state_nbytes(dg: ModuleType) -> None:
    s256 = b"sha\x03" + bytes(96) + (1000).to_bytes(8, "big")
    s512 = b"sha\x07" + bytes(192) + (2**40).to_bytes(8, "big")
    assert dg.state_nbytes("sha256", s256) == 1000
    assert dg.state_nbytes("sha512", s512) == 2**40
    assert dg.state_nbytes("sha512", s256) is None
    assert dg.state_nbytes("sha256", s256[:-1]) is None
    assert dg.state_nbytes("sha256", b"sha\x02" + s256[4:]) is None
    assert dg.state_nbytes("blake3", s256) is None


def test_hasher_type_matches_engine(dg: ModuleType) -> None:
    h: Any = dg.new_hasher("sha256")
    assert type(h) is dg.engine.sha256
