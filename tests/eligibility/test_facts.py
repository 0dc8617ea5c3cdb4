"""ReferralFacts refuses inconsistent input instead of guessing, without echoing personal data."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from eligibility import FactsError, ReferralFacts, SafeguardingFacts
from tests.eligibility.factories import make_facts


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"date_of_birth": date(2025, 1, 1), "expected_due_date": date(2026, 5, 1)},
            "exactly one of",
            id="both-dates",
        ),
        pytest.param(
            {"date_of_birth": None, "expected_due_date": None}, "exactly one of", id="no-date"
        ),
        pytest.param({"postcode": "ox4 1aa"}, "postcode must be normalised", id="lower-case"),
        pytest.param({"postcode": "OX41AA"}, "postcode must be normalised", id="no-space"),
        pytest.param({"postcode": "OX4  1AA"}, "postcode must be normalised", id="two-spaces"),
        pytest.param({"postcode": ""}, "postcode must be normalised", id="empty"),
        pytest.param({"concern_duration_weeks": -1}, "not be negative", id="negative-weeks"),
        pytest.param({"concern_duration_weeks": True}, "whole number", id="bool-weeks"),
        pytest.param({"concern_duration_weeks": 2.5}, "whole number", id="float-weeks"),
        pytest.param({"referrer_urgency": "soon"}, "referrer_urgency", id="bad-urgency"),
    ],
)
def test_invalid_facts_raise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(FactsError, match=message) as caught:
        make_facts(**overrides)
    # FactsError is a ValueError so generic input handling catches it too.
    assert isinstance(caught.value, ValueError)


def test_postcode_error_does_not_echo_the_postcode() -> None:
    with pytest.raises(FactsError) as caught:
        make_facts(postcode="ox4 1aa")
    assert "ox4" not in str(caught.value).lower()


def test_lists_are_stored_as_tuples() -> None:
    facts = ReferralFacts(
        date_of_birth=date(2025, 9, 1),
        expected_due_date=None,
        postcode=None,
        concern_codes=["bonding_difficulties"],  # type: ignore[arg-type]
        risk_factors=["domestic_abuse"],  # type: ignore[arg-type]
    )
    assert facts.concern_codes == ("bonding_difficulties",)
    assert facts.risk_factors == ("domestic_abuse",)
    hash(facts)


def test_defaults_and_antenatal_flag() -> None:
    born = make_facts()
    unborn = make_facts(expected_due_date=date(2026, 5, 1))
    assert born.antenatal is False
    assert unborn.antenatal is True
    assert unborn.date_of_birth is None
    assert born.safeguarding == SafeguardingFacts(False, False, False)
    assert born.referrer_urgency == "routine"
    assert born.risk_factors == ()
    assert born.diagnosis is None


def test_facts_are_frozen() -> None:
    facts = make_facts()
    with pytest.raises(AttributeError):
        facts.postcode = "OX4 1AA"  # type: ignore[misc]
