"""The pathway's shared language: glossary, criteria order, outcome meanings, indicator names.

These words are fixed across rulesets (the API uses exactly them); what varies between teams -
numbers, code lists, reason texts, services - lives in the ruleset file.
"""

from __future__ import annotations

from typing import Final, Literal

Flag = Literal[
    "safeguarding_immediate_risk",
    "safeguarding_child_protection_plan",
    "safeguarding_child_in_need_plan",
    "referrer_marked_urgent",
]

# Order matters: evaluate() builds a tuple of flag values in this order and rulesets refer to
# flags by position after loading.
FLAGS: Final[tuple[Flag, ...]] = (
    "safeguarding_immediate_risk",
    "safeguarding_child_protection_plan",
    "safeguarding_child_in_need_plan",
    "referrer_marked_urgent",
)

CRITERIA: Final[tuple[str, ...]] = ("age", "relationship_concern", "catchment", "diagnosis")

GLOSSARY: Final[tuple[tuple[str, str], ...]] = (
    ("parent-infant team", "a specialised, multidisciplinary parent-infant relationship team"),
    (
        "caregiver",
        "any primary caregiver: parent, foster carer, grandparent, other. "
        '"Parent" is shorthand for this group',
    ),
    ("infant", "the baby, from conception (antenatal) until the age limit"),
    (
        "referrer",
        "the professional or organisation making the referral (health visitor, GP, midwife, "
        "perinatal mental health service, children's social care, children's centre, voluntary "
        "sector, ...) or the family itself (self-referral)",
    ),
    (
        "relationship concern",
        "a concern about the parent-infant relationship that puts, or could put, the baby's "
        "emotional wellbeing and development at risk",
    ),
    (
        "diagnosis",
        "any clinical diagnosis of infant or caregiver. "
        "Never required and never used in eligibility.",
    ),
    (
        "step up",
        "the family needs the parent-infant team's direct specialist work: accepted for "
        "assessment by the team (a move up from universal services)",
    ),
    (
        "step down",
        "eligible, but needs can be met at a lower tier: targeted or universal support (e.g. "
        "health-visitor-led work) with consultation from the parent-infant team",
    ),
    (
        "signpost",
        "not eligible for this team: the referrer is pointed to the services that fit, with the "
        "reasons",
    ),
    (
        "safeguarding alert",
        "the referral says a child may be at immediate risk. Raised whatever the outcome. The "
        "service never replaces local safeguarding procedures: the referrer must contact "
        "children's social care (or police) now",
    ),
    (
        "provisional",
        "the outcome was decided by the rules at intake; a team clinician has not yet confirmed it",
    ),
)

_MEANINGS: Final[dict[str, str]] = dict(GLOSSARY)

OUTCOME_MEANINGS: Final[tuple[tuple[str, str], ...]] = (
    ("step_up", _MEANINGS["step up"]),
    ("step_down", _MEANINGS["step down"]),
    ("signpost", _MEANINGS["signpost"]),
)

# Templates over the ruleset's thresholds, so the published text always matches the numbers.
INDICATOR_DESCRIPTIONS: Final[dict[str, str]] = {
    "safeguarding_immediate_risk": "Safeguarding: immediate risk",
    "safeguarding_child_protection_plan": "Safeguarding: child protection plan",
    "safeguarding_child_in_need_plan": "Safeguarding: child in need plan",
    "severe_risk_factor": "Each severe risk factor present",
    "other_risk_factor": "Each other risk factor present",
    "concern_duration_enduring": "Concern duration of {enduring} weeks or more (enduring)",
    "concern_duration_4_to_11_weeks": "Concern duration of {moderate} to {enduring_less_one} weeks",
    "complex_relationship_concerns": "{complex} or more relationship-concern codes (complex)",
    "referrer_marked_urgent": "The referrer marked the referral urgent",
}
