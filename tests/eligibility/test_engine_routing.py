"""Need score, step up / step down, priority and the safeguarding alert, worked by hand."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from eligibility import Ruleset, evaluate, load_ruleset
from tests.eligibility.factories import AS_OF, DEFAULT_TOML, make_facts, safeguarding

STEP_UP_STEPS = (
    "A clinician from the parent-infant team will review the referral and contact the referrer "
    "to arrange an assessment; until then the outcome is provisional.",
)
STEP_DOWN_STEPS = (
    "Health-visitor-led support for the family, with consultation from the parent-infant team.",
    "A group programme for parents and babies.",
)
ALERT_STEP = (
    "Contact children's social care (or the police) now and follow your local safeguarding "
    "procedures: this referral does not replace them."
)
THREE_RELATIONSHIP_CODES = (
    "bonding_difficulties",
    "negative_feelings_towards_infant",
    "infant_withdrawn_or_avoidant",
)


# Each indicator alone on an otherwise plain eligible referral (one relationship concern).
WEIGHT_CASES = [
    pytest.param(
        {"safeguarding": safeguarding(immediate_risk=True)},
        [("safeguarding_immediate_risk", 3)],
        id="immediate-risk-3",
    ),
    pytest.param(
        {"safeguarding": safeguarding(child_protection_plan=True)},
        [("safeguarding_child_protection_plan", 3)],
        id="child-protection-plan-3",
    ),
    pytest.param(
        {"safeguarding": safeguarding(child_in_need_plan=True)},
        [("safeguarding_child_in_need_plan", 2)],
        id="child-in-need-plan-2",
    ),
    *[
        pytest.param({"risk_factors": (code,)}, [(code, 2)], id=f"severe-{code}-2")
        for code in (
            "caregiver_severe_mental_illness",
            "domestic_abuse",
            "substance_misuse",
            "previous_child_removed",
            "infant_faltering_growth",
        )
    ],
    *[
        pytest.param({"risk_factors": (code,)}, [(code, 1)], id=f"other-{code}-1")
        for code in (
            "caregiver_care_experienced",
            "caregiver_learning_disability",
            "premature_birth_or_neonatal_unit",
            "traumatic_birth",
            "social_isolation",
            "young_caregiver_under_20",
            "insecure_housing",
        )
    ],
    pytest.param({"concern_duration_weeks": 52}, [("concern_duration_enduring", 2)], id="52w-2"),
    pytest.param({"concern_duration_weeks": 12}, [("concern_duration_enduring", 2)], id="12w-2"),
    pytest.param(
        {"concern_duration_weeks": 11}, [("concern_duration_4_to_11_weeks", 1)], id="11w-1"
    ),
    pytest.param({"concern_duration_weeks": 4}, [("concern_duration_4_to_11_weeks", 1)], id="4w-1"),
    pytest.param({"concern_duration_weeks": 3}, [], id="3w-0"),
    pytest.param({"concern_duration_weeks": 0}, [], id="0w-0"),
    pytest.param({"concern_duration_weeks": None}, [], id="duration-unknown-0"),
    pytest.param(
        {"concern_codes": THREE_RELATIONSHIP_CODES},
        [("complex_relationship_concerns", 1)],
        id="three-relationship-codes-1",
    ),
    pytest.param(
        {"concern_codes": THREE_RELATIONSHIP_CODES[:2] + ("feeding_only", "sleep_only")},
        [],
        id="two-relationship-two-other-0",
    ),
    pytest.param({"concern_codes": ("bonding_difficulties",) * 3}, [], id="one-code-repeated-0"),
    pytest.param({"referrer_urgency": "urgent"}, [("referrer_marked_urgent", 1)], id="urgent-1"),
    pytest.param({"risk_factors": ("domestic_abuse",) * 2}, [("domestic_abuse", 2)], id="dup-rf"),
    pytest.param({"diagnosis": "postnatal depression"}, [], id="diagnosis-0"),
]


@pytest.mark.parametrize(("overrides", "expected"), WEIGHT_CASES)
def test_each_weight(
    default: Ruleset, overrides: dict[str, Any], expected: list[tuple[str, int]]
) -> None:
    decision = evaluate(make_facts(**overrides), default, AS_OF)
    assert decision.eligible is True
    assert decision.contributions is not None
    assert [(c.indicator, c.weight) for c in decision.contributions] == expected
    assert decision.score == sum(weight for _, weight in expected)


@pytest.mark.parametrize(
    ("overrides", "score", "outcome"),
    [
        pytest.param({}, 0, "step_down", id="nothing-0"),
        pytest.param(
            {"safeguarding": safeguarding(child_in_need_plan=True)}, 2, "step_down", id="cin-2"
        ),
        pytest.param(
            {"risk_factors": ("domestic_abuse",), "concern_duration_weeks": 3},
            2,
            "step_down",
            id="severe-plus-3w-2",
        ),
        pytest.param(
            {"risk_factors": ("domestic_abuse",), "concern_duration_weeks": 4},
            3,
            "step_up",
            id="severe-plus-4w-3",
        ),
        pytest.param(
            {"safeguarding": safeguarding(child_in_need_plan=True), "referrer_urgency": "urgent"},
            3,
            "step_up",
            id="cin-plus-urgent-3",
        ),
        pytest.param(
            {"risk_factors": ("social_isolation", "insecure_housing")}, 2, "step_down", id="2x1"
        ),
        pytest.param(
            {"risk_factors": ("social_isolation", "insecure_housing", "traumatic_birth")},
            3,
            "step_up",
            id="3x1",
        ),
    ],
)
def test_score_two_steps_down_three_steps_up(
    default: Ruleset, overrides: dict[str, Any], score: int, outcome: str
) -> None:
    decision = evaluate(make_facts(**overrides), default, AS_OF)
    assert (decision.score, decision.outcome) == (score, outcome)
    if outcome == "step_up":
        assert [(r.code, r.message) for r in decision.reasons] == [
            (
                "STEP_UP_SCORE",
                f"The need score is {score}, at or above the step-up threshold of 3: "
                "the family needs the parent-infant team's direct specialist work.",
            )
        ]
        assert decision.next_steps == STEP_UP_STEPS
    else:
        assert [(r.code, r.message) for r in decision.reasons] == [
            (
                "STEP_DOWN_SCORE",
                f"The need score is {score}, below the step-up threshold of 3: the family's "
                "needs can be met by targeted or universal support, with consultation from "
                "the parent-infant team.",
            )
        ]
        assert decision.next_steps == STEP_DOWN_STEPS
    assert decision.signposts == ()


def test_every_indicator_at_once_in_table_order(default: Ruleset) -> None:
    facts = make_facts(
        safeguarding=safeguarding(
            immediate_risk=True, child_protection_plan=True, child_in_need_plan=True
        ),
        # Given out of file order; contributions follow the ruleset's order.
        risk_factors=("social_isolation", "domestic_abuse"),
        concern_duration_weeks=20,
        concern_codes=THREE_RELATIONSHIP_CODES,
        referrer_urgency="urgent",
    )
    decision = evaluate(facts, default, AS_OF)
    assert decision.contributions is not None
    assert [(c.indicator, c.weight) for c in decision.contributions] == [
        ("safeguarding_immediate_risk", 3),
        ("safeguarding_child_protection_plan", 3),
        ("safeguarding_child_in_need_plan", 2),
        ("domestic_abuse", 2),
        ("social_isolation", 1),
        ("concern_duration_enduring", 2),
        ("complex_relationship_concerns", 1),
        ("referrer_marked_urgent", 1),
    ]
    assert decision.score == 15
    assert decision.outcome == "step_up"


def test_severe_risk_factors_come_before_other_risk_factors(default: Ruleset) -> None:
    facts = make_facts(risk_factors=("insecure_housing", "caregiver_severe_mental_illness"))
    decision = evaluate(facts, default, AS_OF)
    assert decision.contributions is not None
    assert [c.indicator for c in decision.contributions] == [
        "caregiver_severe_mental_illness",
        "insecure_housing",
    ]


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
