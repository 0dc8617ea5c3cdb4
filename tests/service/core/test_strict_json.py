"""loads_unique: json.loads that names every repeated key by its path."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.strict_json import DuplicateKeys, loads_unique


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        pytest.param('{"a": 1, "a": 2}', ["a"], id="top-level"),
        pytest.param('{"s": {"risk": true, "risk": false}}', ["s.risk"], id="nested"),
        pytest.param('{"c": [{"p": 1}, {"p": 1, "p": 2}]}', ["c[1].p"], id="in-an-array"),
        pytest.param('[[{"x": {"y": 1, "y": 1}}]]', ["[0][0].x.y"], id="arrays-at-the-top"),
        pytest.param('{"a": 1, "a": 2, "a": 3}', ["a"], id="three-times-named-once"),
        pytest.param('{"b": {"k": 1, "k": 1}, "a": 1, "a": 1}', ["a", "b.k"], id="several"),
    ],
)
def test_repeats_are_named_by_path(text: str, paths: list[str]) -> None:
    with pytest.raises(DuplicateKeys) as caught:
        loads_unique(text)
    assert sorted(caught.value.paths) == paths


def test_the_error_never_holds_a_value() -> None:
    with pytest.raises(DuplicateKeys) as caught:
        loads_unique('{"nhs": "9434765919", "nhs": "9434765919"}')
    assert "9434765919" not in str(caught.value) and "9434765919" not in repr(caught.value.args)


def test_malformed_json_is_still_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_unique('{"a": 1, "a": ')


def test_a_deep_document_with_a_repeat_at_the_bottom() -> None:
    depth = 500
    text = '{"n": ' * depth + '{"k": 1, "k": 2}' + "}" * depth
    with pytest.raises(DuplicateKeys) as caught:
        loads_unique(text)
    assert caught.value.paths == [".".join(["n"] * depth + ["k"])]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json)
def test_documents_without_repeats_read_as_json_loads_reads_them(value: object) -> None:
    text = json.dumps(value)
    assert loads_unique(text) == json.loads(text)
    assert loads_unique(text.encode()) == json.loads(text)
