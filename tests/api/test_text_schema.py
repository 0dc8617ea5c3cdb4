"""The patterns the OpenAPI document states for names and free text say what the service does."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from api.schemas.common import FREE_TEXT_PATTERN, NAME_PATTERN, FreeText, Name

# Every kind of character the rules distinguish, and some that must pass.
_ALPHABET = st.sampled_from(
    [" ", "a", "Z", "é", "\u00a0", "\u2028", "\u200f", "😴", "\t", "\n", "\r", "\x0b", "\x0c"]
    + ["\x00", "\x07", "\x1f", "\x7f", "\x80", "\x85", "\x9f", "\xa0"]
    + [chr(c) for c in range(0x2029, 0x2030)]
    + [chr(c) for c in range(0x2064, 0x206B)]
)
_texts = st.text(_ALPHABET, max_size=12)


def _accepts(adapter: TypeAdapter[str], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@given(_texts)
def test_a_name_passes_exactly_when_it_matches_the_documented_pattern(value: str) -> None:
    # Name also has a length limit of 1..100, which these strings stay within or fail both ways.
    expected = bool(re.fullmatch(NAME_PATTERN, value))
    assert _accepts(TypeAdapter(Name), value) == expected


@given(_texts)
def test_free_text_passes_exactly_when_it_matches_the_documented_pattern(value: str) -> None:
    assert _accepts(TypeAdapter(FreeText), value) == bool(re.fullmatch(FREE_TEXT_PATTERN, value))


def _property(document: dict[str, Any], schema: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][schema]["properties"][name]
    return next((s for s in found.get("anyOf", [found]) if s.get("type") == "string"), found)


@pytest.mark.parametrize(
    ("schema", "name", "pattern"),
    [
        ("Referrer", "name", NAME_PATTERN),
        ("Infant", "given_name", NAME_PATTERN),
        ("Caregiver", "family_name", NAME_PATTERN),
        ("Concerns", "description", FREE_TEXT_PATTERN),
        ("ReferralCreate", "diagnosis", FREE_TEXT_PATTERN),
    ],
)
def test_the_openapi_document_states_the_patterns(
    app: FastAPI, schema: str, name: str, pattern: str
) -> None:
    assert _property(app.openapi(), schema, name)["pattern"] == pattern


def test_the_documented_patterns_use_no_python_only_syntax() -> None:
    # JSON Schema patterns are ECMA-262: \x and \u escapes in classes mean the same there, but
    # \s, \Z, (?P<>) and inline flags do not.
    for pattern in (NAME_PATTERN, FREE_TEXT_PATTERN):
        assert not re.search(r"\\[sSZAz]|\(\?", pattern), pattern
