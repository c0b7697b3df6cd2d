"""Name and tag grammar (distribution-spec v1.1)."""
from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastreg.reference import NAME_MAX, valid_name, valid_tag

SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


@pytest.mark.parametrize("name", ["a", "library/alpine", "a/b/c/d", "my-repo", "my__repo", "a.b_c--d",
                                  "0", "x" * 255])
def test_valid_names(name: str) -> None:
    assert valid_name(name)


@pytest.mark.parametrize("name", ["", "A", "Library/alpine", "a//b", "/a", "a/", "..", "a/../b", "a/./b",
                                  "a___b", "-a", "a-", "a.", ".a", "a b", "a\x00b", "a%2fb", "x" * 256,
                                  "a/" * 130 + "a"])
def test_invalid_names(name: str) -> None:
    assert not valid_name(name)


@given(st.from_regex(SPEC_NAME, fullmatch=True))
def test_every_spec_name_is_accepted_up_to_the_limit(name: str) -> None:
    assert valid_name(name) == (len(name) <= NAME_MAX)


@given(st.text(alphabet="ab._-/A\x00%", max_size=20))
def test_names_agree_with_the_spec_regex(name: str) -> None:
    assert valid_name(name) == (SPEC_NAME.fullmatch(name) is not None)


@pytest.mark.parametrize("tag", ["latest", "v1.0.0", "_x", "A-b.c_d", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert valid_tag(tag)


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a/b", "a:b", "..", "a\x00", "sha256:abc"])
def test_invalid_tags(tag: str) -> None:
    assert not valid_tag(tag)


@given(st.text(alphabet="aZ09._-:/\x00é", max_size=140))
def test_tags_agree_with_the_spec_regex(tag: str) -> None:
    assert valid_tag(tag) == (SPEC_TAG.fullmatch(tag) is not None)
