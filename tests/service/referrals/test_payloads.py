"""Upcasting stored payloads: one step per version, in order, never touching what is stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.referrals import payloads
from service.referrals.payloads import CURRENT_PAYLOAD_VERSION, upcast

STORED: dict[str, Any] = {"infant": {"first_name": "Ada"}, "risk_factors": ["domestic_abuse"]}


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> dict[int, Any]:
    """A registry of our own, as if shapes 1 -> 2 -> 3 existed."""
    registry: dict[int, Any] = {}
    monkeypatch.setattr(payloads, "UPCASTERS", registry)

    @payloads.upcaster(1)
    def rename_first_name(payload: dict[str, Any]) -> dict[str, Any]:
        payload["infant"]["given_name"] = payload["infant"].pop("first_name")
        return payload

    @payloads.upcaster(2)
    def risk_factors_become_objects(payload: dict[str, Any]) -> dict[str, Any]:
        payload["risk_factors"] = [{"code": c} for c in payload["risk_factors"]]
        return payload

    return registry


def test_the_current_shape_is_returned_as_stored() -> None:
    assert upcast(STORED, CURRENT_PAYLOAD_VERSION) is STORED


def test_each_step_runs_in_order_from_the_stored_version(steps: dict[int, Any]) -> None:
    original = copy.deepcopy(STORED)
    shaped = upcast(STORED, 1, current=3)
    assert shaped == {"infant": {"given_name": "Ada"}, "risk_factors": [{"code": "domestic_abuse"}]}
    assert STORED == original  # the stored value is never edited


def test_a_payload_part_way_along_takes_only_the_remaining_steps(steps: dict[int, Any]) -> None:
    shaped = upcast({"infant": {"given_name": "Ada"}, "risk_factors": ["x"]}, 2, current=3)
    assert shaped == {"infant": {"given_name": "Ada"}, "risk_factors": [{"code": "x"}]}


def test_a_shape_newer_than_this_code_is_read_as_it_is(steps: dict[int, Any]) -> None:
    newer = {"infant": {}, "added_by_a_later_release": True}
    assert upcast(newer, 4, current=3) is newer


def test_a_missing_step_is_an_error_not_a_silent_pass(steps: dict[int, Any]) -> None:
    with pytest.raises(LookupError, match="from payload version 3"):
        upcast(STORED, 1, current=4)


def test_a_step_cannot_be_registered_twice(steps: dict[int, Any]) -> None:
    with pytest.raises(ValueError, match="already exists"):
        payloads.upcaster(1)(lambda p: p)
