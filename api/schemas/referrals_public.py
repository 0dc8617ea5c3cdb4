"""Response schemas for referrals: what was stored, served as it was stored.

No validators, no patterns, unknown fields ignored (`ResponseModel`): a rule tightened after a
referral was accepted, a field since removed, or a consent withdrawn later must never make that
referral unreadable (FastAPI validates every response against these). Stored payloads are
brought to the current shape by the service's upcasters before they get here. The nested
records have names of their own (`InfantRecord`, …) because generated partner clients show them
next to the request models (`Infant`, …), which stay strict.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import Field

from api.schemas.common import ResponseModel
from api.schemas.lifecycle import MovePublic, TriagePublic
from api.schemas.vocabulary import (
    CaregiverRelationship,
    CriterionResult,
    Outcome,
    Priority,
    ReferralStatus,
    ReferrerRole,
    ServiceInvolved,
    StoredConcernCode,
    StoredRiskFactorCode,
    Urgency,
)
from service.referrals.statuses import Action


class ReferrerRecord(ResponseModel):
    name: str
    role: ReferrerRole
    email: str | None = None
    phone: str | None = None


class InfantRecord(ResponseModel):
    """The baby as referred: normally one of the two dates, as the request required."""

    given_name: str | None = None
    family_name: str | None = None
    nhs_number: str | None = None
    date_of_birth: date | None = None
    expected_due_date: date | None = None


class CaregiverRecord(ResponseModel):
    given_name: str
    family_name: str
    relationship: CaregiverRelationship
    phone: str | None = None
    nhs_number: str | None = None


class ConcernsRecord(ResponseModel):
    codes: list[StoredConcernCode]
    description: str | None = None
    duration_weeks: int | None = None


class SafeguardingRecord(ResponseModel):
    immediate_risk: bool
    child_protection_plan: bool
    child_in_need_plan: bool


class ConsentRecord(ResponseModel):
    caregiver_consent: bool = Field(description="As recorded when the referral was made.")
    recorded_on: date | None = None


class Reason(ResponseModel):
    code: str = Field(description="A reason code of the ruleset (listed by GET /v1/pathway).")
    message: str


class Contribution(ResponseModel):
    indicator: str
    weight: int


class Signpost(ResponseModel):
    """A service to contact instead (after Open Referral UK's service record)."""

    id: str
    name: str
    description: str
    url: str | None = None
    email: str | None = None


class RulesetIdentity(ResponseModel):
    id: str
    version: str
    sha256: str


class Criteria(ResponseModel):
    age: CriterionResult
    relationship_concern: CriterionResult
    catchment: CriterionResult
    diagnosis: CriterionResult = Field(description="Always `not_required`.")


class Decision(ResponseModel):
    eligible: bool
    outcome: Outcome
    priority: Priority
    provisional: bool
    safeguarding_alert: bool
    criteria: Criteria
    reasons: list[Reason]
    score: int | None = Field(description="Present whenever the referral is eligible.")
    contributions: list[Contribution] | None
    next_steps: list[str]
    signposts: list[Signpost]
    ruleset: RulesetIdentity


class DuplicateMatch(StrEnum):
    """How a possible duplicate matched (lifecycle.md)."""

    nhs_number = "nhs_number"
    name_and_date = "name_and_date"


class PossibleDuplicate(ResponseModel):
    """An open referral that may be of the same infant (warn, never block)."""

    id: str
    reference: str
    status: ReferralStatus
    received_at: datetime
    match: DuplicateMatch


class ReferralPublic(ResponseModel):
    """A whole referral with its decision: personal data, for its organisation and the team."""

    id: str
    reference: str
    organisation: str
    status: ReferralStatus
    version: int = Field(description='1 at intake, +1 per move; the ETag is W/"<version>".')
    provisional: bool = Field(
        description="True until a team clinician triages the referral (the rules' decision "
        "is provisional; the triage is not)."
    )
    available_actions: list[Action] = Field(
        description="What you may do to this referral now (lifecycle.md)."
    )
    received_at: datetime
    updated_at: datetime
    triage: TriagePublic | None = None
    withdrawal: MovePublic | None = None
    closure: MovePublic | None = None
    possible_duplicates: list[PossibleDuplicate] = Field(
        default_factory=list,
        description="Open referrals of the same infant that you may read: at intake, and in "
        "the team's view of a referral.",
    )
    referrer: ReferrerRecord
    infant: InfantRecord
    caregivers: list[CaregiverRecord]
    postcode: str
    concerns: ConcernsRecord
    risk_factors: list[StoredRiskFactorCode] = Field(default_factory=list)
    safeguarding: SafeguardingRecord
    diagnosis: str | None = None
    consent: ConsentRecord
    referrer_urgency: Urgency = Urgency.routine
    services_involved: list[ServiceInvolved] = Field(default_factory=list)
    decision: Decision


class ReferralStatusPublic(ResponseModel):
    """Where a referral stands, with no personal data. After triage, the clinician's outcome
    and priority (and signposts), with `provisional` false."""

    id: str
    reference: str
    status: ReferralStatus
    version: int
    available_actions: list[Action]
    triaged_at: datetime | None
    outcome: Outcome
    priority: Priority
    provisional: bool
    safeguarding_alert: bool
    next_steps: list[str]
    signposts: list[Signpost]
    updated_at: datetime


class ReferralSummary(ResponseModel):
    """One line of a referral list, with no personal data."""

    id: str
    reference: str
    organisation: str
    status: ReferralStatus
    version: int
    waiting_days: int = Field(description="Whole days since received, in the service's zone.")
    outcome: Outcome
    priority: Priority
    provisional: bool
    safeguarding_alert: bool
    received_at: datetime
    updated_at: datetime


class ReferralsPage(ResponseModel):
    items: list[ReferralSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
