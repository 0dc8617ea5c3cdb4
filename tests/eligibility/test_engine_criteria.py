"""Each eligibility criterion and its boundaries; expected values worked by hand from pathway.md."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from eligibility import (
    FactsError,
    Ruleset,
    UnknownCode,
    UnknownCodeError,
    evaluate,
    load_ruleset,
)
from tests.eligibility.factories import AS_OF, RULESETS_DIR, make_facts, variant_of

D = date
AGE_OVER_LIMIT = "The infant has reached this team's age limit of 24 months."
NO_RELATIONSHIP = (
    "None of the concerns given is about the parent-infant relationship, "
    "which is what this team works with."
)


@pytest.mark.parametrize(
    ("birth", "as_of", "age"),
    [
        pytest.param(D(2024, 1, 15), D(2026, 1, 14), "met", id="day-before-24m"),
        pytest.param(D(2024, 1, 15), D(2026, 1, 15), "not_met", id="on-24m-day"),
        pytest.param(D(2024, 1, 15), D(2027, 6, 1), "not_met", id="long-after"),
        pytest.param(D(2024, 2, 29), D(2026, 2, 28), "met", id="leap-day-birth-28-feb"),
        pytest.param(D(2024, 2, 29), D(2026, 3, 1), "not_met", id="leap-day-birth-1-mar"),
        pytest.param(D(2024, 1, 31), D(2026, 1, 30), "met", id="born-31st-day-before"),
        pytest.param(D(2024, 1, 31), D(2026, 1, 31), "not_met", id="born-31st-on-the-day"),
        pytest.param(D(2026, 3, 10), D(2026, 3, 10), "met", id="born-today"),
        pytest.param(D(2026, 3, 9), D(2026, 3, 10), "met", id="born-yesterday"),
    ],
)
def test_age_default(default: Ruleset, birth: date, as_of: date, age: str) -> None:
    decision = evaluate(make_facts(date_of_birth=birth), default, as_of)
    assert decision.criteria.age == age
    assert decision.eligible is (age == "met")
    if age == "met":
        assert decision.outcome == "step_down"
        assert [r.code for r in decision.reasons] == ["STEP_DOWN_SCORE"]
    else:
        assert decision.outcome == "signpost"
        assert [(r.code, r.message) for r in decision.reasons] == [
            ("AGE_OVER_LIMIT", AGE_OVER_LIMIT)
        ]
        assert [s.id for s in decision.signposts] == ["camhs", "early_help", "health_visiting"]


@pytest.mark.parametrize(
    ("birth", "as_of", "age"),
    [
        # 18 months after 31 March is 31 September, which does not exist: 1 October.
        pytest.param(D(2024, 3, 31), D(2025, 9, 30), "met", id="31-mar-30-sep"),
        pytest.param(D(2024, 3, 31), D(2025, 10, 1), "not_met", id="31-mar-1-oct"),
        # 18 months after 31 August 2023 is 31 February 2025: 1 March 2025.
        pytest.param(D(2023, 8, 31), D(2025, 2, 28), "met", id="31-aug-28-feb"),
        pytest.param(D(2023, 8, 31), D(2025, 3, 1), "not_met", id="31-aug-1-mar"),
        pytest.param(D(2024, 6, 15), D(2025, 12, 14), "met", id="plain-day-before"),
        pytest.param(D(2024, 6, 15), D(2025, 12, 15), "not_met", id="plain-on-the-day"),
    ],
)
def test_age_eighteen_month_ruleset(eighteen: Ruleset, birth: date, as_of: date, age: str) -> None:
    assert evaluate(make_facts(date_of_birth=birth), eighteen, as_of).criteria.age == age


def test_birth_after_as_of_is_an_error_without_the_date(default: Ruleset) -> None:
    with pytest.raises(FactsError, match="after the evaluation date") as caught:
        evaluate(make_facts(date_of_birth=D(2026, 3, 11)), default, D(2026, 3, 10))
    assert "2026" not in str(caught.value)


@pytest.mark.parametrize(
    "due",
    [
        pytest.param(D(2026, 6, 1), id="due-in-future"),
        pytest.param(D(2026, 3, 1), id="due-recently-passed"),
    ],
)
def test_antenatal_accepted_by_default(default: Ruleset, due: date) -> None:
    decision = evaluate(make_facts(expected_due_date=due), default, AS_OF)
    assert decision.criteria.age == "met"
    assert decision.eligible is True


def test_antenatal_not_accepted(birth_only: Ruleset) -> None:
    facts = make_facts(expected_due_date=D(2026, 6, 1), postcode="OX4 1AA")
    decision = evaluate(facts, birth_only, AS_OF)
    assert decision.criteria.age == "not_met"
    assert decision.outcome == "signpost"
    assert [(r.code, r.message) for r in decision.reasons] == [
        ("ANTENATAL_NOT_ACCEPTED", "Not before birth.")
    ]
    assert [s.id for s in decision.signposts] == ["midwifery", "perinatal_mental_health"]


def test_born_infant_accepted_by_birth_only_ruleset(birth_only: Ruleset) -> None:
    decision = evaluate(make_facts(postcode="OX4 1AA"), birth_only, AS_OF)
    assert decision.criteria.age == "met"
    assert decision.eligible is True


RELATIONSHIP_CODES = [
    "bonding_difficulties",
    "caregiver_finds_infant_hard_to_read",
    "negative_feelings_towards_infant",
    "infant_withdrawn_or_avoidant",
    "infant_dysregulation_in_relationship",
    "caregiver_mental_health_affecting_relationship",
    "birth_trauma_or_loss_affecting_relationship",
    "separation_or_care_proceedings",
    "other_relationship_concern",
]
OTHER_CODES = [
    "caregiver_mental_health_only",
    "infant_physical_health",
    "feeding_only",
    "sleep_only",
    "practical_or_housing",
    "other",
]


@pytest.mark.parametrize("code", RELATIONSHIP_CODES)
def test_each_relationship_concern_meets_the_criterion(default: Ruleset, code: str) -> None:
    decision = evaluate(make_facts(concern_codes=(code,)), default, AS_OF)
    assert decision.criteria.relationship_concern == "met"
    assert decision.eligible is True


@pytest.mark.parametrize("code", OTHER_CODES)
def test_each_other_concern_alone_does_not(default: Ruleset, code: str) -> None:
    decision = evaluate(make_facts(concern_codes=(code,)), default, AS_OF)
    assert decision.criteria.relationship_concern == "not_met"
    assert decision.outcome == "signpost"
    assert [(r.code, r.message) for r in decision.reasons] == [
        ("NO_RELATIONSHIP_CONCERN", NO_RELATIONSHIP)
    ]
    assert [s.id for s in decision.signposts] == [
        "health_visiting",
        "gp",
        "nhs_talking_therapies",
        "perinatal_mental_health",
    ]


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        pytest.param(("caregiver_mental_health_only", "feeding_only"), "not_met", id="others-only"),
        pytest.param(tuple(OTHER_CODES), "not_met", id="every-other-code"),
        pytest.param(("feeding_only", "bonding_difficulties"), "met", id="other-then-relationship"),
        pytest.param((), "not_met", id="no-codes"),
    ],
)
def test_concern_mixtures(default: Ruleset, codes: tuple[str, ...], status: str) -> None:
    decision = evaluate(make_facts(concern_codes=codes), default, AS_OF)
    assert decision.criteria.relationship_concern == status


@pytest.mark.parametrize(
    ("postcode", "status"),
    [
        pytest.param("OX4 1AA", "met", id="area-OX"),
        pytest.param("OX44 9ZZ", "met", id="area-OX-two-digit-district"),
        pytest.param("SW1A 1AA", "met", id="district-SW1A"),
        pytest.param("SW1A 2AA", "met", id="district-SW1A-other-sector"),
        pytest.param("SW1E 5AA", "not_met", id="district-SW1E-not-SW1A"),
        pytest.param("SW3 1AA", "not_met", id="area-SW-not-W"),
        pytest.param("W1A 1AA", "met", id="area-W"),
        pytest.param("WC1A 1AA", "not_met", id="area-WC-not-W"),
        pytest.param("RG4 7AB", "met", id="sector-RG4-7"),
        pytest.param("RG4 8AB", "not_met", id="sector-RG4-8"),
        pytest.param("RG40 7AB", "not_met", id="district-RG40-not-RG4"),
        pytest.param("RG1 1AA", "not_met", id="area-RG-not-listed"),
        pytest.param("ZE1 0AA", "not_met", id="elsewhere"),
        pytest.param(None, "not_met", id="postcode-unknown"),
    ],
)
def test_catchment(birth_only: Ruleset, postcode: str | None, status: str) -> None:
    decision = evaluate(make_facts(postcode=postcode), birth_only, AS_OF)
    assert decision.criteria.catchment == status
    if status == "not_met":
        assert [(r.code, r.message) for r in decision.reasons] == [
            ("OUT_OF_CATCHMENT", "Outside OX, SW1A, RG4 7, W.")
        ]
        assert [s.id for s in decision.signposts] == ["parent_infant_team_map", "health_visiting"]


@pytest.mark.parametrize(
    ("entry", "postcode", "status"),
    [
        pytest.param("OX4", "OX4 1AA", "met", id="district-OX4"),
        pytest.param("OX4", "OX44 1AA", "not_met", id="district-OX4-not-OX44"),
        pytest.param("OX4", "OX1 1AA", "not_met", id="district-OX4-not-OX1"),
        pytest.param(" ox4  1 ", "OX4 1AA", "met", id="normalised-sector"),
        pytest.param(" ox4  1 ", "OX4 2AA", "not_met", id="normalised-sector-other"),
        pytest.param("S", "S1 2AB", "met", id="one-letter-area"),
        pytest.param("S", "SW1A 1AA", "not_met", id="one-letter-area-not-prefix"),
    ],
)
def test_catchment_entry_kinds(tmp_path: Path, entry: str, postcode: str, status: str) -> None:
    path = variant_of(
        RULESETS_DIR / "birth_only_catchment.toml",
        tmp_path,
        ('catchment = ["OX", "SW1A", "RG4 7", "W"]', f'catchment = ["{entry}"]'),
    )
    decision = evaluate(make_facts(postcode=postcode), load_ruleset(path), AS_OF)
    assert decision.criteria.catchment == status


@pytest.mark.parametrize("postcode", [None, "ZE1 0AA", "OX4 1AA"])
def test_empty_catchment_means_anywhere(default: Ruleset, postcode: str | None) -> None:
    assert evaluate(make_facts(postcode=postcode), default, AS_OF).criteria.catchment == "met"


def test_one_reason_per_unmet_criterion_in_order(default: Ruleset) -> None:
    facts = make_facts(date_of_birth=D(2023, 1, 1), concern_codes=("feeding_only",))
    decision = evaluate(facts, default, AS_OF)
    assert [r.code for r in decision.reasons] == ["AGE_OVER_LIMIT", "NO_RELATIONSHIP_CONCERN"]
    # Health visiting serves both reasons and is listed once, where it first appears.
    assert [s.id for s in decision.signposts] == [
        "camhs",
        "early_help",
        "health_visiting",
        "gp",
        "nhs_talking_therapies",
        "perinatal_mental_health",
    ]


def test_every_criterion_unmet(birth_only: Ruleset) -> None:
    facts = make_facts(expected_due_date=D(2026, 6, 1), concern_codes=("feeding_only",))
    decision = evaluate(facts, birth_only, AS_OF)
    assert decision.criteria.to_dict() == {
        "age": "not_met",
        "relationship_concern": "not_met",
        "catchment": "not_met",
        "diagnosis": "not_required",
    }
    assert [r.code for r in decision.reasons] == [
        "ANTENATAL_NOT_ACCEPTED",
        "NO_RELATIONSHIP_CONCERN",
        "OUT_OF_CATCHMENT",
    ]
    assert [s.id for s in decision.signposts] == [
        "midwifery",
        "perinatal_mental_health",
        "health_visiting",
        "parent_infant_team_map",
    ]
    assert decision.score is None
    assert decision.contributions is None
    assert decision.next_steps == ("See the services listed.",)


@pytest.mark.parametrize(
    ("overrides", "problems"),
    [
        pytest.param(
            {"concern_codes": ("bonding_difficulties", "bonding_problems")},
            [UnknownCode("concerns.codes[1]", "bonding_problems")],
            id="unknown-concern",
        ),
        pytest.param(
            {"risk_factors": ("housing",)},
            [UnknownCode("risk_factors[0]", "housing")],
            id="unknown-risk-factor",
        ),
        pytest.param(
            {"risk_factors": ("domestic_abuse", "bonding_difficulties")},
            [UnknownCode("risk_factors[1]", "bonding_difficulties")],
            id="concern-code-given-as-risk-factor",
        ),
        pytest.param(
            {"concern_codes": ("x",), "risk_factors": ("y", "domestic_abuse", "z")},
            [
                UnknownCode("concerns.codes[0]", "x"),
                UnknownCode("risk_factors[0]", "y"),
                UnknownCode("risk_factors[2]", "z"),
            ],
            id="several",
        ),
        pytest.param(
            {"date_of_birth": D(2020, 1, 1), "concern_codes": ("Bonding_Difficulties",)},
            [UnknownCode("concerns.codes[0]", "Bonding_Difficulties")],
            id="case-matters-even-when-ineligible",
        ),
    ],
)
def test_unknown_codes_are_reported_not_dropped(
    default: Ruleset, overrides: dict[str, Any], problems: list[UnknownCode]
) -> None:
    facts = make_facts(**overrides)
    assert default.unknown_codes(facts) == problems
    with pytest.raises(UnknownCodeError) as caught:
        evaluate(facts, default, AS_OF)
    assert caught.value.problems == problems
    for problem in problems:
        assert f"{problem.field}: unknown code {problem.code!r}" in str(caught.value)


def test_known_codes_have_no_problems(default: Ruleset) -> None:
    facts = make_facts(risk_factors=("domestic_abuse",), concern_codes=("feeding_only",))
    assert default.unknown_codes(facts) == []
