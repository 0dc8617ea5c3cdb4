"""Pydantic models of the ruleset TOML file: used at load time only, never per decision."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from eligibility.catchment import normalise_entry
from eligibility.glossary import Flag

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Text = Annotated[str, StringConstraints(min_length=1)]
Weight = Annotated[int, Field(ge=0, le=100)]
CatchmentEntry = Annotated[str, AfterValidator(normalise_entry)]
Url = Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class _Section(BaseModel):
    # strict: TOML has real types, so "3" or true where a number belongs is a mistake to report,
    # not to coerce; forbid: a misspelt key must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RulesetInfo(_Section):
    """`[ruleset]`: identity and time zone."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    version: Text
    timezone: Text
    description: Text


class EligibilitySection(_Section):
    """`[eligibility]`: the age limit, antenatal flag and catchment."""

    age_limit_months: Annotated[int, Field(ge=1, le=48)]
    accepts_antenatal: bool
    catchment: list[CatchmentEntry]


class CodesSection(_Section):
    """`[codes]`: the concern and risk-factor code lists, in display order."""

    relationship_concerns: Annotated[list[Code], Field(min_length=1)]
    other_concerns: list[Code]
    severe_risk_factors: list[Code]
    other_risk_factors: list[Code]


class WeightsSection(_Section):
    """`[weights]`: what each indicator adds to the need score."""

    safeguarding_immediate_risk: Weight
    safeguarding_child_protection_plan: Weight
    safeguarding_child_in_need_plan: Weight
    severe_risk_factor: Weight
    other_risk_factor: Weight
    concern_duration_enduring: Weight
    concern_duration_4_to_11_weeks: Weight
    complex_relationship_concerns: Weight
    referrer_marked_urgent: Weight
    # Per-code overrides of severe_risk_factor / other_risk_factor.
    risk_factors: dict[str, Weight] = Field(default_factory=dict)


class ThresholdsSection(_Section):
    """`[thresholds]`: the step-up score and the duration and complexity cut-offs."""

    step_up_score: Annotated[int, Field(ge=0)]
    enduring_concern_weeks: Annotated[int, Field(ge=1)]
    moderate_concern_weeks: Annotated[int, Field(ge=0)]
    complex_concern_count: Annotated[int, Field(ge=1)]


class PrioritySection(_Section):
    """`[priority]`: the flags that make a referral urgent."""

    urgent_when: list[Flag]


class SafeguardingAlertSection(_Section):
    """`[safeguarding_alert]`: the flags that raise the alert (at least one)."""

    raised_when: Annotated[list[Flag], Field(min_length=1)]


class CriteriaSection(_Section):
    """`[criteria]`: plain-English description of each criterion (templates)."""

    age: Text
    relationship_concern: Text
    catchment: Text
    diagnosis: Text


class ReasonText(_Section):
    """One reason's plain-English message (a template) and the services it signposts to."""

    message: Text
    signposts: list[str] = Field(default_factory=list)


class ReasonsSection(_Section):
    """`[reasons.*]`: every reason code the engine can emit."""

    AGE_OVER_LIMIT: ReasonText
    ANTENATAL_NOT_ACCEPTED: ReasonText
    NO_RELATIONSHIP_CONCERN: ReasonText
    OUT_OF_CATCHMENT: ReasonText
    STEP_UP_SCORE: ReasonText
    STEP_DOWN_SCORE: ReasonText
    SAFEGUARDING_ALERT: ReasonText


class NextStepsSection(_Section):
    """`[next_steps]`: what happens next, per outcome, and when the alert is raised."""

    step_up: Annotated[list[Text], Field(min_length=1)]
    step_down: Annotated[list[Text], Field(min_length=1)]
    signpost: Annotated[list[Text], Field(min_length=1)]
    safeguarding_alert: Annotated[list[Text], Field(min_length=1)]


class ServiceRecord(_Section):
    """`[[services]]`: one signposting entry, after Open Referral UK's service record."""

    id: Code
    name: Text
    description: Text
    url: Url | None = None
    email: Email | None = None


class LifecycleSection(_Section):
    """`[lifecycle]`: the reason codes a clinician or referrer gives for each move."""

    triage_override: Annotated[list[Code], Field(min_length=1)] = [
        "clinical_judgement",
        "additional_information",
        "family_circumstances",
        "safeguarding_concern",
        "other",
    ]
    withdraw: Annotated[list[Code], Field(min_length=1)] = [
        "family_declined",
        "consent_withdrawn",
        "referred_elsewhere",
        "no_longer_needed",
        "entered_in_error",
        "other",
    ]
    close: Annotated[list[Code], Field(min_length=1)] = [
        "intervention_completed",
        "family_disengaged",
        "moved_out_of_area",
        "stepped_down_support_completed",
        "other",
    ]


class RulesetFile(_Section):
    """The whole ruleset file."""

    ruleset: RulesetInfo
    eligibility: EligibilitySection
    codes: CodesSection
    # Optional: a code without a label is shown as its words ("feeding_only" -> "Feeding only").
    labels: dict[str, Text] = Field(default_factory=dict)
    weights: WeightsSection
    thresholds: ThresholdsSection
    priority: PrioritySection
    safeguarding_alert: SafeguardingAlertSection
    criteria: CriteriaSection
    reasons: ReasonsSection
    next_steps: NextStepsSection
    services: list[ServiceRecord]
    # Optional, so that rulesets written before the lifecycle still load: the defaults are
    # the codes of lifecycle.md.
    lifecycle: LifecycleSection = Field(default_factory=LifecycleSection)
