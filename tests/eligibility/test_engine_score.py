"""Need score and step up / step down, worked by hand from pathway.md's weights table."""

from __future__ import annotations

from typing import Any

import pytest

from eligibility import Ruleset, evaluate
from tests.eligibility.default_texts import STEP_DOWN_STEPS, STEP_UP_STEPS
from tests.eligibility.factories import AS_OF, make_facts, safeguarding

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
