"""The bundled default ruleset encodes pathway.md exactly (values typed from the document)."""

from __future__ import annotations

import hashlib

import pytest

from eligibility import Ruleset, default_ruleset, load_ruleset
from tests.eligibility.factories import DEFAULT_TOML

RELATIONSHIP_CONCERNS = (
    "bonding_difficulties",
    "caregiver_finds_infant_hard_to_read",
    "negative_feelings_towards_infant",
    "infant_withdrawn_or_avoidant",
    "infant_dysregulation_in_relationship",
    "caregiver_mental_health_affecting_relationship",
    "birth_trauma_or_loss_affecting_relationship",
    "separation_or_care_proceedings",
    "other_relationship_concern",
)
OTHER_CONCERNS = (
    "caregiver_mental_health_only",
    "infant_physical_health",
    "feeding_only",
    "sleep_only",
    "practical_or_housing",
    "other",
)
SEVERE_RISK_FACTORS = (
    "caregiver_severe_mental_illness",
    "domestic_abuse",
    "substance_misuse",
    "previous_child_removed",
    "infant_faltering_growth",
)
OTHER_RISK_FACTORS = (
    "caregiver_care_experienced",
    "caregiver_learning_disability",
    "premature_birth_or_neonatal_unit",
    "traumatic_birth",
    "social_isolation",
    "young_caregiver_under_20",
    "insecure_housing",
)


def test_identity_and_time_zone(default: Ruleset) -> None:
    assert default.id == "default"
    assert default.version
    assert default.timezone == "Europe/London"
    assert default.sha256 == hashlib.sha256(DEFAULT_TOML.read_bytes()).hexdigest()
    assert default.identity.to_dict() == {
        "id": "default",
        "version": default.version,
        "sha256": default.sha256,
    }


def test_loading_the_file_by_path_gives_the_same_identity(default: Ruleset) -> None:
    assert load_ruleset(DEFAULT_TOML).identity == default.identity


def test_default_ruleset_is_cached() -> None:
    assert default_ruleset() is default_ruleset()


def test_eligibility_settings(default: Ruleset) -> None:
    assert default.age_limit_months == 24
    assert default.accepts_antenatal is True
    assert default.catchment == ()


def test_code_lists(default: Ruleset) -> None:
    assert default.relationship_concern_codes == RELATIONSHIP_CONCERNS
    assert default.other_concern_codes == OTHER_CONCERNS
    assert default.severe_risk_factors == SEVERE_RISK_FACTORS
    assert default.other_risk_factors == OTHER_RISK_FACTORS
    assert default.all_concern_codes == frozenset(RELATIONSHIP_CONCERNS + OTHER_CONCERNS)
    assert default.all_risk_factors == frozenset(SEVERE_RISK_FACTORS + OTHER_RISK_FACTORS)


def test_weights_and_thresholds(default: Ruleset) -> None:
    w = default.weights
    assert (
        w.safeguarding_immediate_risk,
        w.safeguarding_child_protection_plan,
        w.safeguarding_child_in_need_plan,
        w.severe_risk_factor,
        w.other_risk_factor,
        w.concern_duration_enduring,
        w.concern_duration_4_to_11_weeks,
        w.complex_relationship_concerns,
        w.referrer_marked_urgent,
    ) == (3, 3, 2, 2, 1, 2, 1, 1, 1)
    assert dict(default.risk_factor_weights) == {
        **dict.fromkeys(SEVERE_RISK_FACTORS, 2),
        **dict.fromkeys(OTHER_RISK_FACTORS, 1),
    }
    t = default.thresholds
    assert default.step_up_threshold == 3
    assert (t.step_up_score, t.enduring_concern_weeks, t.moderate_concern_weeks) == (3, 12, 4)
    assert t.complex_concern_count == 3


def test_priority_and_alert_rules(default: Ruleset) -> None:
    assert set(default.urgent_when) == {
        "safeguarding_immediate_risk",
        "safeguarding_child_protection_plan",
        "referrer_marked_urgent",
    }
    assert default.alert_when == ("safeguarding_immediate_risk",)


def test_signposting_by_reason(default: Ruleset) -> None:
    by_reason = {
        code: [s.id for s in default.reason_signposts[code]]
        for code in (
            "AGE_OVER_LIMIT",
            "NO_RELATIONSHIP_CONCERN",
            "OUT_OF_CATCHMENT",
            "ANTENATAL_NOT_ACCEPTED",
        )
    }
    assert by_reason == {
        "AGE_OVER_LIMIT": ["camhs", "early_help", "health_visiting"],
        "NO_RELATIONSHIP_CONCERN": [
            "health_visiting",
            "gp",
            "nhs_talking_therapies",
            "perinatal_mental_health",
        ],
        "OUT_OF_CATCHMENT": ["parent_infant_team_map", "health_visiting"],
        "ANTENATAL_NOT_ACCEPTED": ["midwifery", "perinatal_mental_health"],
    }


def test_every_service_has_a_name_description_and_way_to_reach_it(default: Ruleset) -> None:
    assert len(default.services) == 8
    for service in default.services:
        assert service.name and service.description
        assert service.url or service.email
        assert service.url is None or service.url.startswith("https://")


def test_step_down_next_steps(default: Ruleset) -> None:
    step_down = default.next_steps["step_down"]
    assert len(step_down) == 2
    assert "health-visitor-led support" in step_down[0].lower()
    assert "consultation from the parent-infant team" in step_down[0]
    assert "group programme for parents and babies" in step_down[1]


def test_safeguarding_text_says_contact_social_care_or_police_now(default: Ruleset) -> None:
    for text in (
        default.reasons["SAFEGUARDING_ALERT"].message,
        *default.next_steps["safeguarding_alert"],
    ):
        assert "children's social care" in text
        assert "police" in text
        assert "now" in text
        assert "local safeguarding procedures" in text


def test_every_code_has_a_label(default: Ruleset) -> None:
    codes = RELATIONSHIP_CONCERNS + OTHER_CONCERNS + SEVERE_RISK_FACTORS + OTHER_RISK_FACTORS
    assert set(default.labels) == set(codes)
    assert default.labels["domestic_abuse"] == "Domestic abuse"


def test_ruleset_is_immutable(default: Ruleset) -> None:
    with pytest.raises(AttributeError, match="immutable"):
        default.age_limit_months = 48
    assert default.age_limit_months == 24
