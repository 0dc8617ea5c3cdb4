"""The decision's JSON shape is the API contract's, stable whether eligible or not."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from eligibility import CriterionResult, Decision, Outcome, Priority, Ruleset, evaluate
from tests.eligibility.factories import AS_OF, make_facts, safeguarding

TOP_LEVEL_KEYS = {
    "eligible",
    "outcome",
    "priority",
    "provisional",
    "safeguarding_alert",
    "criteria",
    "reasons",
    "score",
    "contributions",
    "next_steps",
    "signposts",
    "ruleset",
}


def _decisions(ruleset: Ruleset) -> dict[str, Decision]:
    return {
        "step_up": evaluate(
            make_facts(risk_factors=("domestic_abuse", "traumatic_birth")), ruleset, AS_OF
        ),
        "step_down": evaluate(make_facts(), ruleset, AS_OF),
        "signpost": evaluate(
            make_facts(
                date_of_birth=date(2023, 1, 1), safeguarding=safeguarding(immediate_risk=True)
            ),
            ruleset,
            AS_OF,
        ),
    }


def test_eligible_shape(default: Ruleset) -> None:
    data = _decisions(default)["step_up"].to_dict()
    assert set(data) == TOP_LEVEL_KEYS
    assert data["eligible"] is True
    assert data["outcome"] == "step_up"
    assert data["priority"] == "routine"
    assert data["provisional"] is True
    assert data["safeguarding_alert"] is False
    assert data["criteria"] == {
        "age": "met",
        "relationship_concern": "met",
        "catchment": "met",
        "diagnosis": "not_required",
    }
    assert data["score"] == 3
    assert data["contributions"] == [
        {"indicator": "domestic_abuse", "weight": 2},
        {"indicator": "traumatic_birth", "weight": 1},
    ]
    assert [set(r) for r in data["reasons"]] == [{"code", "message"}]
    assert data["signposts"] == []
    assert data["ruleset"] == {
        "id": "default",
        "version": default.version,
        "sha256": default.sha256,
    }
    assert all(isinstance(step, str) for step in data["next_steps"])


def test_ineligible_shape_keeps_every_key(default: Ruleset) -> None:
    data = _decisions(default)["signpost"].to_dict()
    assert set(data) == TOP_LEVEL_KEYS
    assert data["score"] is None
    assert data["contributions"] is None
    assert data["signposts"][0] == {
        "id": "camhs",
        "name": "Children and young people's mental health services (CAMHS)",
        "description": default.services[0].description,
        "url": "https://www.youngminds.org.uk/young-person/your-guide-to-support/guide-to-camhs/",
        "email": None,
    }


@pytest.mark.parametrize("outcome", ["step_up", "step_down", "signpost"])
def test_round_trip_through_json(default: Ruleset, outcome: str) -> None:
    decision = _decisions(default)[outcome]
    assert decision.outcome == outcome
    restored = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert restored == decision


@pytest.mark.parametrize("outcome", ["step_up", "step_down", "signpost"])
def test_vocabulary_is_enums_inside_and_plain_strings_in_json(
    default: Ruleset, outcome: str
) -> None:
    """Stored decisions and audit hashes were written from plain strings: the JSON form keeps
    exactly those bytes, and reading it back gives the enum members again."""
    decision = _decisions(default)[outcome]
    assert decision.outcome is Outcome(outcome)
    assert isinstance(decision.priority, Priority)
    assert decision.criteria.diagnosis is CriterionResult.not_required
    data = decision.to_dict()
    plain = [data["outcome"], data["priority"], *data["criteria"].values()]
    assert all(type(value) is str for value in plain), plain
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert f'"outcome":"{outcome}"' in text
    assert '"diagnosis":"not_required"' in text
    restored = Decision.from_dict(json.loads(text))
    assert restored.outcome is decision.outcome
    assert restored.criteria == decision.criteria


def _broken(default: Ruleset, **changes: Any) -> dict[str, Any]:
    data = _decisions(default)["step_down"].to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"score": True}, "score should be int", id="bool-score"),
        pytest.param({"outcome": "maybe"}, "outcome should be one of", id="bad-outcome"),
        pytest.param({"eligible": "yes"}, "eligible should be bool", id="string-eligible"),
        pytest.param({"criteria": {"age": "met"}}, "missing or malformed", id="short-criteria"),
        pytest.param({"reasons": [{"code": 1, "message": "x"}]}, "text field", id="int-code"),
    ],
)
def test_from_dict_rejects_malformed(
    default: Ruleset, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Decision.from_dict(_broken(default, **changes))


def test_missing_key_rejected(default: Ruleset) -> None:
    data = _decisions(default)["step_down"].to_dict()
    del data["ruleset"]
    with pytest.raises(ValueError, match="missing or malformed"):
        Decision.from_dict(data)


def test_messages_carry_no_personal_data(default: Ruleset) -> None:
    facts = make_facts(
        date_of_birth=date(2023, 4, 17),
        postcode="OX4 1AA",
        concern_codes=("feeding_only",),
        diagnosis="Jane Quixote's zyxomania",
    )
    text = json.dumps(evaluate(facts, default, AS_OF).to_dict())
    for personal in ("2023-04-17", "17 April", "OX4", "Jane", "Quixote", "zyxomania"):
        assert personal not in text
