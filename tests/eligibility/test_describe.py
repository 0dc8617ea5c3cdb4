"""`Ruleset.describe()` publishes the pathway for `GET /v1/pathway`."""

from __future__ import annotations

import json

from eligibility import Ruleset


def test_describe_is_json_and_complete(default: Ruleset) -> None:
    described = json.loads(json.dumps(default.describe()))
    assert described["ruleset"] == default.identity.to_dict()
    assert [c["name"] for c in described["criteria"]] == [
        "age",
        "relationship_concern",
        "catchment",
        "diagnosis",
    ]
    assert all(c["description"] for c in described["criteria"])
    assert "under 24 months" in described["criteria"][0]["description"]
    assert described["criteria"][2]["description"] == (
        "The family's postcode is in the team's catchment: anywhere."
    )
    assert [o["name"] for o in described["outcomes"]] == ["step_up", "step_down", "signpost"]
    assert described["outcomes"][2]["meaning"].startswith("not eligible for this team")


def test_describe_codes_weights_and_thresholds(default: Ruleset) -> None:
    described = default.describe()
    codes = described["codes"]
    assert [c["code"] for c in codes["relationship_concerns"]] == list(
        default.relationship_concern_codes
    )
    assert codes["other_concerns"][2] == {"code": "feeding_only", "label": "Feeding only"}
    assert codes["severe_risk_factors"][1] == {
        "code": "domestic_abuse",
        "label": "Domestic abuse",
        "weight": 2,
    }
    assert {c["weight"] for c in codes["other_risk_factors"]} == {1}
    weights = {w["indicator"]: (w["weight"], w["description"]) for w in described["weights"]}
    assert weights == {
        "safeguarding_immediate_risk": (3, "Safeguarding: immediate risk"),
        "safeguarding_child_protection_plan": (3, "Safeguarding: child protection plan"),
        "safeguarding_child_in_need_plan": (2, "Safeguarding: child in need plan"),
        "severe_risk_factor": (2, "Each severe risk factor present"),
        "other_risk_factor": (1, "Each other risk factor present"),
        "concern_duration_enduring": (2, "Concern duration of 12 weeks or more (enduring)"),
        "concern_duration_4_to_11_weeks": (1, "Concern duration of 4 to 11 weeks"),
        "complex_relationship_concerns": (1, "3 or more relationship-concern codes (complex)"),
        "referrer_marked_urgent": (1, "The referrer marked the referral urgent"),
    }
    assert described["thresholds"] == {
        "step_up_score": 3,
        "enduring_concern_weeks": 12,
        "moderate_concern_weeks": 4,
        "complex_concern_count": 3,
    }


def test_describe_services_reasons_and_glossary(default: Ruleset) -> None:
    described = default.describe()
    assert [s["id"] for s in described["signposting"]] == [s.id for s in default.services]
    assert {r["code"] for r in described["reasons"]} == {
        "AGE_OVER_LIMIT",
        "ANTENATAL_NOT_ACCEPTED",
        "NO_RELATIONSHIP_CONCERN",
        "OUT_OF_CATCHMENT",
    }
    assert described["safeguarding_alert"]["raised_when"] == ["safeguarding_immediate_risk"]
    terms = {g["term"]: g["meaning"] for g in described["glossary"]}
    assert list(terms) == [
        "parent-infant team",
        "caregiver",
        "infant",
        "referrer",
        "relationship concern",
        "diagnosis",
        "step up",
        "step down",
        "signpost",
        "safeguarding alert",
        "provisional",
    ]
    assert "Never required and never used in eligibility." in terms["diagnosis"]


def test_describe_follows_the_ruleset(birth_only: Ruleset) -> None:
    described = birth_only.describe()
    assert described["accepts_antenatal"] is False
    assert described["catchment"] == ["OX", "SW1A", "RG4 7", "W"]
    assert described["criteria"][2]["description"] == "Postcode in OX, SW1A, RG4 7, W."
