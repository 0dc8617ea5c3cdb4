"""The public, JSON-ready description of a ruleset (served by `GET /v1/pathway`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from eligibility.glossary import CRITERIA, GLOSSARY, INDICATOR_DESCRIPTIONS, OUTCOME_MEANINGS

if TYPE_CHECKING:
    from eligibility.ruleset import Ruleset

# Reasons a signposted referral can carry, in criteria order.
UNMET_REASONS: tuple[str, ...] = (
    "ANTENATAL_NOT_ACCEPTED",
    "AGE_OVER_LIMIT",
    "NO_RELATIONSHIP_CONCERN",
    "OUT_OF_CATCHMENT",
)


def describe_ruleset(ruleset: Ruleset) -> dict[str, Any]:
    """Identity, criteria, outcomes, codes, weights, thresholds, services and glossary."""
    weights = ruleset.weights
    thresholds = ruleset.thresholds
    numbers = {
        "enduring": thresholds.enduring_concern_weeks,
        "enduring_less_one": thresholds.enduring_concern_weeks - 1,
        "moderate": thresholds.moderate_concern_weeks,
        "complex": thresholds.complex_concern_count,
    }

    def code_list(codes: tuple[str, ...]) -> list[dict[str, str]]:
        return [{"code": code, "label": ruleset.labels[code]} for code in codes]

    def risk_list(codes: tuple[str, ...]) -> list[dict[str, Any]]:
        return [
            {"code": c, "label": ruleset.labels[c], "weight": ruleset.risk_factor_weights[c]}
            for c in codes
        ]

    return {
        "ruleset": ruleset.identity.to_dict(),
        "description": ruleset.description,
        "timezone": ruleset.timezone,
        "age_limit_months": ruleset.age_limit_months,
        "accepts_antenatal": ruleset.accepts_antenatal,
        "catchment": list(ruleset.catchment),
        "criteria": [
            {"name": name, "description": ruleset.criteria_descriptions[name]} for name in CRITERIA
        ],
        "outcomes": [{"name": name, "meaning": meaning} for name, meaning in OUTCOME_MEANINGS],
        "codes": {
            "relationship_concerns": code_list(ruleset.relationship_concern_codes),
            "other_concerns": code_list(ruleset.other_concern_codes),
            "severe_risk_factors": risk_list(ruleset.severe_risk_factors),
            "other_risk_factors": risk_list(ruleset.other_risk_factors),
        },
        "weights": [
            {
                "indicator": indicator,
                "description": template.format(**numbers),
                "weight": getattr(weights, indicator),
            }
            for indicator, template in INDICATOR_DESCRIPTIONS.items()
        ],
        "thresholds": asdict(thresholds),
        "priority": {"urgent_when": list(ruleset.urgent_when)},
        "safeguarding_alert": {
            "raised_when": list(ruleset.alert_when),
            "message": ruleset.reasons["SAFEGUARDING_ALERT"].message,
        },
        "reasons": [
            {
                "code": code,
                "message": ruleset.reasons[code].message,
                "signposts": [service.id for service in ruleset.reason_signposts[code]],
            }
            for code in UNMET_REASONS
        ],
        "signposting": [service.to_dict() for service in ruleset.services],
        "next_steps": {outcome: list(steps) for outcome, steps in ruleset.next_steps.items()},
        "lifecycle": {
            "reason_codes": {
                move: [{"code": c, "label": c.replace("_", " ").capitalize()} for c in codes]
                for move, codes in ruleset.lifecycle_reasons.items()
            }
        },
        "glossary": [{"term": term, "meaning": meaning} for term, meaning in GLOSSARY],
    }
