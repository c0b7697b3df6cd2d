"""Range / Content-Range parsing (RFC 9110 §14, OCI distribution-spec chunked upload).

Table tests run over both engines (compiled fastreg._digest, pure fastreg._digest_py);
hypothesis checks that the two agree on arbitrary input and that results obey the RFC's
satisfiability rules.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
needs_both = pytest.mark.skipif(_compiled is None, reason="differential tests need the compiled engine")

LL_MAX = 2**63 - 1
NS = "416"          # expected: RangeNotSatisfiable


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


# -- Range ---------------------------------------------------------------------------------------

RANGE_CASES: list[tuple[str, int, Any]] = [
    # int-range
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=0-9", 10, (0, 9)),
    ("bytes=2-5", 10, (2, 5)),
    ("bytes=5-", 10, (5, 9)),
    ("bytes=0-", 10, (0, 9)),
    ("bytes=9-", 10, (9, 9)),
    ("bytes=3-100", 10, (3, 9)),                   # last-pos clamped to the length
    ("bytes=0-9999999999999999999", 10, (0, 9)),   # 19 digits: still a number
    ("bytes=0005-0007", 10, (5, 7)),               # 1*DIGIT allows leading zeros
    # suffix-range
    ("bytes=-1", 10, (9, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-10", 10, (0, 9)),
    ("bytes=-500", 10, (0, 9)),
    ("bytes=-9999999999999999999", 10, (0, 9)),
    # case-insensitive unit, OWS around the field value and around commas, empty list elements
    ("BYTES=1-2", 10, (1, 2)),
    ("Bytes=1-2", 10, (1, 2)),
    (" \tbytes=1-2\t ", 10, (1, 2)),
    ("bytes= 1-2", 10, (1, 2)),
    ("bytes=1-2 ,", 10, (1, 2)),
    ("bytes=,1-2", 10, (1, 2)),
    ("bytes=, ,\t1-2, ,", 10, (1, 2)),
    # unsatisfiable
    ("bytes=10-", 10, NS),
    ("bytes=10-20", 10, NS),
    ("bytes=100-200", 10, NS),
    ("bytes=9999999999999999999-", 10, NS),
    ("bytes=-0", 10, NS),
    ("bytes=-000", 10, NS),
    ("bytes=0-", 0, NS),
    ("bytes=0-0", 0, NS),
    ("bytes=-5", 0, NS),
    # invalid -> None (the header is ignored, 200 with everything)
    ("bytes=5-2", 10, None),                       # last-pos < first-pos
    ("bytes=20-2", 10, None),                      # ... even when first-pos is beyond the end
    ("bytes=0-1,3-4", 10, None),                   # several ranges
    ("bytes=0-1, 0-1", 10, None),
    ("bytes=-1,0-", 10, None),
    ("bytes=0-1,x", 10, None),
    ("bytes=", 10, None),
    ("bytes=,", 10, None),
    ("bytes= ", 10, None),
    ("bytes", 10, None),
    ("", 10, None),
    ("   ", 10, None),
    ("bytes=-", 10, None),
    ("bytes=--1", 10, None),
    ("bytes=1", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes=+1-2", 10, None),
    ("bytes=-+2", 10, None),
    ("bytes=1-+2", 10, None),
    ("bytes=1--2", 10, None),
    ("bytes=1-2-", 10, None),
    ("bytes=1 -2", 10, None),
    ("bytes=1- 2", 10, None),
    ("bytes=1-2 3", 10, None),
    ("bytes=0x1-2", 10, None),
    ("bytes=1.0-2", 10, None),
    ("bytes =1-2", 10, None),                     # no whitespace around "="
    ("bytes= =1-2", 10, None),
    ("bytes:1-2", 10, None),
    ("byte=1-2", 10, None),
    ("bits=1-2", 10, None),
    ("items=0-1", 10, None),                      # unknown unit: ignored
    ("bytesx=1-2", 10, None),
    ("bytes=1-2\n", 10, None),                    # only SP/HTAB are OWS
    ("\nbytes=1-2", 10, None),
    ("bytes=\u0661-\u0662", 10, None),             # Arabic-Indic digits are not DIGIT
    ("bytes=\uff11-\uff12", 10, None),             # fullwidth digits neither
    ("\u0392ytes=1-2", 10, None),
    ("bytes=00000000000000000001-2", 10, None),   # more than 19 digits: refused
    ("bytes=1-00000000000000000002", 10, None),
    ("bytes=-00000000000000000002", 10, None),
    ("bytes=99999999999999999999-", 10, None),
    ("bytes=0-1;q=1", 10, None),
]


@pytest.mark.parametrize("value,size,expected", RANGE_CASES)
def test_parse_range(engine: ModuleType, value: str, size: int, expected: Any) -> None:
    if expected == NS:
        with pytest.raises(engine.RangeNotSatisfiable):
            engine.parse_range(value, size)
    else:
        assert engine.parse_range(value, size) == expected


def test_range_not_satisfiable_is_a_value_error(engine: ModuleType) -> None:
    assert issubclass(engine.RangeNotSatisfiable, ValueError)
    with pytest.raises(ValueError):
        engine.parse_range("bytes=5-", 5)


def test_parse_range_big_sizes(engine: ModuleType) -> None:
    assert engine.parse_range("bytes=-1", LL_MAX) == (LL_MAX - 1, LL_MAX - 1)
    assert engine.parse_range("bytes=9223372036854775806-", LL_MAX) == (LL_MAX - 1, LL_MAX - 1)
    assert engine.parse_range("bytes=0-9999999999999999999", LL_MAX) == (0, LL_MAX - 1)
    with pytest.raises(engine.RangeNotSatisfiable):
        engine.parse_range("bytes=9999999999999999999-", LL_MAX)


def test_parse_range_argument_errors(engine: ModuleType) -> None:
    with pytest.raises(ValueError):
        engine.parse_range("bytes=0-1", -1)
    with pytest.raises(TypeError):
        engine.parse_range(b"bytes=0-1", 10)
    with pytest.raises(TypeError):
        engine.parse_range(None, 10)
    with pytest.raises(TypeError):
        engine.parse_range("bytes=0-1", 1.5)
    with pytest.raises(OverflowError):
        engine.parse_range("bytes=0-1", 2**63)


# -- Content-Range (uploads) ------------------------------------------------------------------------

CONTENT_RANGE_CASES: list[tuple[str, Any]] = [
    ("0-0", (0, 0)),
    ("0-99", (0, 99)),
    ("100-199", (100, 199)),
    ("  100-199\t", (100, 199)),
    ("bytes=100-199", (100, 199)),
    ("BYTES=1-2", (1, 2)),
    ("bytes 100-199/200", (100, 199)),
    ("bytes 100-199/*", (100, 199)),
    ("Bytes 0-0/1", (0, 0)),
    ("0-9999999999999999999", (0, 9999999999999999999)),
    ("5-4", ValueError),                       # end < start
    ("bytes 5-4/*", ValueError),
    ("bytes 0-199/199", ValueError),           # complete-length <= last-pos
    ("bytes 0-199/100", ValueError),
    ("", ValueError),
    ("-", ValueError),
    ("0-", ValueError),
    ("-5", ValueError),
    ("0", ValueError),
    ("0-1-2", ValueError),
    ("+0-1", ValueError),
    ("0-+1", ValueError),
    ("0 -1", ValueError),
    ("0- 1", ValueError),
    ("bytes  0-1/*", ValueError),
    ("bytes 0-1", ValueError),                 # the SP form needs "/length"
    ("bytes=0-1/2", ValueError),               # ... and only the SP form takes it
    ("0-1/2", ValueError),
    ("bytes 0-1/", ValueError),
    ("bytes 0-1/x", ValueError),
    ("bytes */100", ValueError),               # unsatisfied-range: no chunk
    ("bytes:0-1", ValueError),
    ("bits=0-1", ValueError),
    ("0-1\n", ValueError),
    ("\u0661-\u0662", ValueError),
    ("00000000000000000000-1", ValueError),    # 20 digits
    ("0-10000000000000000000", ValueError),
    ("bytes 0-1/10000000000000000000", ValueError),
]


@pytest.mark.parametrize("value,expected", CONTENT_RANGE_CASES)
def test_parse_content_range(engine: ModuleType, value: str, expected: Any) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError):
            engine.parse_content_range(value)
    else:
        assert engine.parse_content_range(value) == expected


def test_parse_content_range_type_errors(engine: ModuleType) -> None:
    with pytest.raises(TypeError):
        engine.parse_content_range(b"0-1")
    with pytest.raises(TypeError):
        engine.parse_content_range(None)


# -- format -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("start,end,size,expected", [
    (0, 0, 1, "bytes 0-0/1"), (0, 9, 10, "bytes 0-9/10"), (5, 5, 10, "bytes 5-5/10"),
    (LL_MAX - 1, LL_MAX - 1, LL_MAX, f"bytes {LL_MAX - 1}-{LL_MAX - 1}/{LL_MAX}"),
])
def test_format_content_range(engine: ModuleType, start: int, end: int, size: int, expected: str) -> None:
    assert engine.format_content_range(start, end, size) == expected


@pytest.mark.parametrize("args,exc", [
    ((5, 4, 10), ValueError), ((-1, 4, 10), ValueError), ((0, 10, 10), ValueError), ((0, 0, 0), ValueError),
    ((0, 1, 2**63), OverflowError), ((0.0, 1, 2), TypeError), (("0", 1, 2), TypeError),
])
def test_format_content_range_errors(engine: ModuleType, args: tuple[Any, ...], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        engine.format_content_range(*args)


def test_round_trip_range_to_content_range(engine: ModuleType) -> None:
    for header, size in [("bytes=3-5", 10), ("bytes=-4", 10), ("bytes=7-", 10)]:
        span = engine.parse_range(header, size)
        assert span is not None
        cr = engine.format_content_range(*span, size)
        assert engine.parse_content_range(cr) == span


# -- differential and property tests ------------------------------------------------------------------

def _outcome(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the exception's kind is the outcome
        name = type(exc).__name__
        return ("raise", "RangeNotSatisfiable" if name == "RangeNotSatisfiable" else name)


_range_alphabet = "bytesBYTES=-,0123456789 \t+*/;x\n\u0661"
_range_text = st.one_of(
    st.text(max_size=40),
    st.text(_range_alphabet, max_size=40),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.text("0123456789", max_size=21), st.text("0123456789", max_size=21)),
    st.from_regex(r"[ \t]*[bB][yY][tT][eE][sS]=[ \t,]*(\d{0,3}-\d{0,3})?([ \t]*,[ \t]*(\d{0,3}-\d{0,3})?)*[ \t]*",
                  fullmatch=True),
)
_sizes = st.one_of(st.integers(0, 1200), st.integers(0, LL_MAX))


@needs_both
@settings(max_examples=1500, deadline=None)
@given(value=_range_text, size=_sizes)
def test_range_parsers_agree(value: str, size: int) -> None:
    assert _compiled is not None
    assert _outcome(_compiled.parse_range, value, size) == _outcome(_digest_py.parse_range, value, size)


_cr_text = st.one_of(
    st.text(max_size=40),
    st.text("bytesBYTES =-0123456789/*\t+x", max_size=40),
    st.from_regex(r"[ \t]*(bytes[ =])?\d{1,20}-\d{1,20}(/(\d{1,20}|\*))?[ \t]*", fullmatch=True),
)


@needs_both
@settings(max_examples=1500, deadline=None)
@given(value=_cr_text)
def test_content_range_parsers_agree(value: str) -> None:
    assert _compiled is not None
    assert _outcome(_compiled.parse_content_range, value) == _outcome(_digest_py.parse_content_range, value)


@needs_both
@settings(max_examples=300, deadline=None)
@given(start=st.integers(-2, LL_MAX), length=st.integers(-2, 1000), size=st.integers(-1, LL_MAX))
def test_format_agrees(start: int, length: int, size: int) -> None:
    assert _compiled is not None
    end = min(start + length, LL_MAX)
    assert (_outcome(_compiled.format_content_range, start, end, size)
            == _outcome(_digest_py.format_content_range, start, end, size))


@settings(max_examples=500, deadline=None)
@given(first=st.integers(0, 2000), last=st.one_of(st.none(), st.integers(0, 2000)),
       size=st.integers(0, 1500), ows=st.sampled_from(["", " ", "\t ", "  "]))
def test_int_range_semantics(first: int, last: int | None, size: int, ows: str) -> None:
    # RFC 9110 §14.1.1: invalid if last < first; satisfiable iff first < size; last clamped.
    header = f"{ows}bytes={first}-{'' if last is None else last}{ows}"
    for engine in ENGINE_MODULES:
        if last is not None and last < first:
            assert engine.parse_range(header, size) is None
        elif first >= size:
            with pytest.raises(engine.RangeNotSatisfiable):
                engine.parse_range(header, size)
        else:
            start, end = engine.parse_range(header, size)
            assert start == first and end == (size - 1 if last is None else min(last, size - 1))
            assert 0 <= start <= end < size


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 3000), size=st.integers(0, 1500))
def test_suffix_range_semantics(n: int, size: int) -> None:
    for engine in ENGINE_MODULES:
        if n == 0 or size == 0:
            with pytest.raises(engine.RangeNotSatisfiable):
                engine.parse_range(f"bytes=-{n}", size)
        else:
            assert engine.parse_range(f"bytes=-{n}", size) == (max(size - n, 0), size - 1)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 10**19 - 1), length=st.integers(0, 10**6))
def test_content_range_forms(start: int, length: int) -> None:
    end = start + length
    forms = [f"{start}-{end}", f"bytes={start}-{end}", f"bytes {start}-{end}/*", f"bytes {start}-{end}/{end + 1}"]
    for engine in ENGINE_MODULES:
        for form in forms:
            if re.fullmatch(r"\D*\d{1,19}-\d{1,19}(/(\*|\d{1,19}))?", form):
                assert engine.parse_content_range(form) == (start, end)
            else:
                with pytest.raises(ValueError):
                    engine.parse_content_range(form)
