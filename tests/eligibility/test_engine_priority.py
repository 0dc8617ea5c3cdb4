"""Priority, the safeguarding alert, and rules that follow the ruleset's data."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from eligibility import Ruleset, evaluate, load_ruleset
from tests.eligibility.default_texts import ALERT_STEP, STEP_DOWN_STEPS, STEP_UP_STEPS
from tests.eligibility.factories import AS_OF, DEFAULT_TOML, make_facts, safeguarding


@pytest.mark.parametrize(
    ("overrides", "priority"),
    [
        pytest.param({}, "routine", id="nothing"),
        pytest.param({"safeguarding": safeguarding(immediate_risk=True)}, "urgent", id="imm"),
        pytest.param(
            {"safeguarding": safeguarding(child_protection_plan=True)}, "urgent", id="cpp"
        ),
        pytest.param({"safeguarding": safeguarding(child_in_need_plan=True)}, "routine", id="cin"),
        pytest.param({"referrer_urgency": "urgent"}, "urgent", id="referrer-urgent"),
        pytest.param(
            {"risk_factors": ("domestic_abuse", "substance_misuse", "previous_child_removed")},
            "routine",
            id="high-score-alone-is-routine",
        ),
        pytest.param(
            {
                "date_of_birth": date(2023, 1, 1),
                "safeguarding": safeguarding(child_protection_plan=True),
            },
            "urgent",
            id="signposted-with-cpp",
        ),
        pytest.param(
            {"date_of_birth": date(2023, 1, 1), "referrer_urgency": "urgent"},
            "urgent",
            id="signposted-referrer-urgent",
        ),
    ],
)
def test_priority(default: Ruleset, overrides: dict[str, Any], priority: str) -> None:
    assert evaluate(make_facts(**overrides), default, AS_OF).priority == priority


ALERT_MESSAGE = (
    "The referral says a child may be at immediate risk. This service does not replace local "
    "safeguarding procedures: contact children's social care (or the police) now, following "
    "your local safeguarding procedures."
)


def test_safeguarding_alert_on_a_signposted_referral(default: Ruleset) -> None:
    facts = make_facts(
        date_of_birth=date(2023, 1, 1), safeguarding=safeguarding(immediate_risk=True)
    )
    decision = evaluate(facts, default, AS_OF)
    assert decision.outcome == "signpost"
    assert decision.safeguarding_alert is True
    assert decision.priority == "urgent"
    assert [(r.code, r.message) for r in decision.reasons] == [
        ("SAFEGUARDING_ALERT", ALERT_MESSAGE),
        ("AGE_OVER_LIMIT", "The infant has reached this team's age limit of 24 months."),
    ]
    assert decision.next_steps[0] == ALERT_STEP
    assert decision.score is None


def test_safeguarding_alert_on_step_up(default: Ruleset) -> None:
    decision = evaluate(make_facts(safeguarding=safeguarding(immediate_risk=True)), default, AS_OF)
    assert (decision.outcome, decision.safeguarding_alert) == ("step_up", True)
    assert [r.code for r in decision.reasons] == ["SAFEGUARDING_ALERT", "STEP_UP_SCORE"]
    assert decision.next_steps == (ALERT_STEP, *STEP_UP_STEPS)


def test_safeguarding_alert_on_step_down(tmp_path: Path) -> None:
    # With the default weights immediate risk alone steps up, so zero its weight to reach
    # step_down and show the alert is independent of the outcome.
    path = tmp_path / "zero.toml"
    path.write_text(
        DEFAULT_TOML.read_text().replace(
            "safeguarding_immediate_risk = 3", "safeguarding_immediate_risk = 0"
        )
    )
    ruleset = load_ruleset(path)
    decision = evaluate(make_facts(safeguarding=safeguarding(immediate_risk=True)), ruleset, AS_OF)
    assert (decision.outcome, decision.safeguarding_alert, decision.score) == ("step_down", True, 0)
    assert decision.contributions == ()
    assert [r.code for r in decision.reasons] == ["SAFEGUARDING_ALERT", "STEP_DOWN_SCORE"]
    assert decision.next_steps == (ALERT_STEP, *STEP_DOWN_STEPS)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param({}, id="none"),
        pytest.param({"child_protection_plan": True}, id="cpp-only"),
        pytest.param({"child_in_need_plan": True}, id="cin-only"),
    ],
)
def test_no_alert_without_immediate_risk(default: Ruleset, flags: dict[str, bool]) -> None:
    decision = evaluate(make_facts(safeguarding=safeguarding(**flags)), default, AS_OF)
    assert decision.safeguarding_alert is False
    assert "SAFEGUARDING_ALERT" not in [r.code for r in decision.reasons]
    assert ALERT_STEP not in decision.next_steps


def test_non_relationship_concerns_only_signpost_even_with_high_need(default: Ruleset) -> None:
    facts = make_facts(
        concern_codes=("caregiver_mental_health_only", "feeding_only", "sleep_only"),
        risk_factors=("domestic_abuse", "substance_misuse"),
        concern_duration_weeks=30,
    )
    decision = evaluate(facts, default, AS_OF)
    assert decision.eligible is False
    assert decision.outcome == "signpost"
    assert [r.code for r in decision.reasons] == ["NO_RELATIONSHIP_CONCERN"]
    assert (decision.score, decision.contributions) == (None, None)


def test_diagnosis_is_never_required_and_never_used(default: Ruleset) -> None:
    without = evaluate(make_facts(), default, AS_OF)
    with_diagnosis = evaluate(make_facts(diagnosis="postnatal depression"), default, AS_OF)
    assert without.criteria.diagnosis == "not_required"
    assert with_diagnosis == without


def test_provisional_and_identity(default: Ruleset) -> None:
    decision = evaluate(make_facts(), default, AS_OF)
    assert decision.provisional is True
    assert decision.ruleset == default.identity


# The eighteen-month test ruleset changes every number: the engine must follow the data.
@pytest.mark.parametrize(
    ("overrides", "contributions", "outcome", "priority", "alert"),
    [
        pytest.param(
            {"risk_factors": ("social_isolation",)},
            [("social_isolation", 3)],
            "step_down",
            "routine",
            False,
            id="per-code-override-3-below-threshold-4",
        ),
        pytest.param(
            {"risk_factors": ("social_isolation", "insecure_housing")},
            [("social_isolation", 3), ("insecure_housing", 1)],
            "step_up",
            "routine",
            False,
            id="score-4-steps-up",
        ),
        pytest.param(
            {"concern_duration_weeks": 8},
            [("concern_duration_enduring", 3)],
            "step_down",
            "routine",
            False,
            id="enduring-from-8w",
        ),
        pytest.param(
            {"concern_duration_weeks": 2},
            [("concern_duration_4_to_11_weeks", 2)],
            "step_down",
            "routine",
            False,
            id="moderate-from-2w",
        ),
        pytest.param(
            {"concern_codes": ("bonding_difficulties", "infant_withdrawn_or_avoidant")},
            [("complex_relationship_concerns", 2)],
            "step_down",
            "routine",
            False,
            id="complex-from-2-codes",
        ),
        pytest.param(
            {"safeguarding": safeguarding(child_in_need_plan=True)},
            [],
            "step_down",
            "routine",
            False,
            id="zero-weight-not-listed",
        ),
        pytest.param(
            {"safeguarding": safeguarding(child_protection_plan=True)},
            [("safeguarding_child_protection_plan", 4)],
            "step_up",
            "routine",
            True,
            id="cpp-alerts-but-is-routine",
        ),
        pytest.param(
            {"referrer_urgency": "urgent"},
            [("referrer_marked_urgent", 1)],
            "step_down",
            "routine",
            False,
            id="referrer-urgency-not-a-priority-rule-here",
        ),
        pytest.param(
            {"safeguarding": safeguarding(immediate_risk=True)},
            [("safeguarding_immediate_risk", 5)],
            "step_up",
            "urgent",
            True,
            id="immediate-risk",
        ),
    ],
)
def test_rules_are_data(
    eighteen: Ruleset,
    overrides: dict[str, Any],
    contributions: list[tuple[str, int]],
    outcome: str,
    priority: str,
    alert: bool,
) -> None:
    decision = evaluate(make_facts(**overrides), eighteen, AS_OF)
    assert decision.contributions is not None
    assert [(c.indicator, c.weight) for c in decision.contributions] == contributions
    assert (decision.outcome, decision.priority, decision.safeguarding_alert) == (
        outcome,
        priority,
        alert,
    )
    assert decision.ruleset.id == "test-eighteen-months"
    assert decision.ruleset.version == "2.3.4"
