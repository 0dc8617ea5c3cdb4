"""`GET /v1/pathway`: typed, so that generated clients get real classes, not a bare dict.

The pathway is where partners get the code lists, their labels, the reason codes and what each
outcome means; `eligibility.describe` builds the data, these schemas give it its contract.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import ResponseModel
from api.schemas.referrals_public import RulesetIdentity, Signpost
from api.schemas.vocabulary import Outcome, StoredConcernCode, StoredRiskFactorCode

# The safeguarding and urgency facts a ruleset can make urgent or alert on (eligibility.FLAGS).
Flag = Literal[
    "safeguarding_immediate_risk",
    "safeguarding_child_protection_plan",
    "safeguarding_child_in_need_plan",
    "referrer_marked_urgent",
]


class CriterionDescription(ResponseModel):
    name: Literal["age", "relationship_concern", "catchment", "diagnosis"]
    description: str


class OutcomeDescription(ResponseModel):
    name: Outcome
    meaning: str


class ConcernCodeEntry(ResponseModel):
    code: StoredConcernCode
    label: str = Field(description="Plain-English text to show a referrer for this code.")


class RiskFactorEntry(ResponseModel):
    code: StoredRiskFactorCode
    label: str
    weight: int = Field(description="What this risk factor adds to the need score.")


class CodeLists(ResponseModel):
    relationship_concerns: list[ConcernCodeEntry] = Field(
        description="Concerns about the relationship: at least one meets the criterion."
    )
    other_concerns: list[ConcernCodeEntry]
    severe_risk_factors: list[RiskFactorEntry]
    other_risk_factors: list[RiskFactorEntry]


class WeightDescription(ResponseModel):
    indicator: str
    description: str
    weight: int


class PathwayThresholds(ResponseModel):
    step_up_score: int = Field(description="An eligible referral at this score or above steps up.")
    enduring_concern_weeks: int
    moderate_concern_weeks: int
    complex_concern_count: int


class PriorityRule(ResponseModel):
    urgent_when: list[Flag]


class SafeguardingAlertRule(ResponseModel):
    raised_when: list[Flag]
    message: str


class ReasonDescription(ResponseModel):
    code: str = Field(description="A reason code a signposted decision can carry.")
    message: str
    signposts: list[str] = Field(description="Ids of the `signposting` services it points to.")


class NextSteps(ResponseModel):
    step_up: list[str]
    step_down: list[str]
    signpost: list[str]
    safeguarding_alert: list[str] = Field(description="Given first whenever the alert is raised.")


class GlossaryEntry(ResponseModel):
    term: str
    meaning: str


class ReasonCodeEntry(ResponseModel):
    code: str
    label: str


class LifecycleReasonCodes(ResponseModel):
    """The reason codes each move takes (lifecycle.md); an unknown code is 422."""

    triage: list[ReasonCodeEntry] = Field(
        description="For a triage that differs from the rules' decision (an override)."
    )
    withdraw: list[ReasonCodeEntry]
    close: list[ReasonCodeEntry]


class LifecycleRules(ResponseModel):
    reason_codes: LifecycleReasonCodes


class Pathway(ResponseModel):
    """The active ruleset: what the rules are, and every code and word they use."""

    ruleset: RulesetIdentity
    description: str
    timezone: str = Field(description="Where 'today' is for the rules, e.g. Europe/London.")
    age_limit_months: int
    accepts_antenatal: bool
    catchment: list[str] = Field(description="Postcode prefixes served; empty means anywhere.")
    criteria: list[CriterionDescription]
    outcomes: list[OutcomeDescription]
    codes: CodeLists
    weights: list[WeightDescription]
    thresholds: PathwayThresholds
    priority: PriorityRule
    safeguarding_alert: SafeguardingAlertRule
    reasons: list[ReasonDescription]
    signposting: list[Signpost]
    lifecycle: LifecycleRules
    next_steps: NextSteps
    glossary: list[GlossaryEntry]
