"""Request and response schemas for referrals (the HTTP shape; the rules never see these)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from api.schemas.common import (
    Code,
    Email,
    FreeText,
    IsoDate,
    JsonBool,
    Name,
    NhsNumber,
    Phone,
    Postcode,
    RequestModel,
    ResponseModel,
    Weeks,
)
from api.schemas.lifecycle import MovePublic, TriagePublic
from eligibility import ReferralFacts, SafeguardingFacts
from service.referrals.statuses import Action, ReferralStatus


class ReferrerRole(StrEnum):
    health_visitor = "health_visitor"
    gp = "gp"
    midwife = "midwife"
    perinatal_mental_health = "perinatal_mental_health"
    children_social_care = "children_social_care"
    childrens_centre = "childrens_centre"
    camhs = "camhs"
    voluntary_sector = "voluntary_sector"
    self_referral = "self"
    other = "other"


class CaregiverRelationship(StrEnum):
    mother = "mother"
    father = "father"
    foster_carer = "foster_carer"
    grandparent = "grandparent"
    other = "other"


class ServiceInvolved(StrEnum):
    health_visiting = "health_visiting"
    gp = "gp"
    midwifery = "midwifery"
    perinatal_mental_health = "perinatal_mental_health"
    adult_mental_health = "adult_mental_health"
    children_social_care = "children_social_care"
    early_help = "early_help"
    camhs = "camhs"
    childrens_centre = "childrens_centre"
    voluntary_sector = "voluntary_sector"
    other = "other"


Outcome = Literal["step_up", "step_down", "signpost"]
Priority = Literal["urgent", "routine"]


class Referrer(RequestModel):
    name: Name
    role: ReferrerRole
    email: Email | None = None
    phone: Phone | None = None


class Infant(RequestModel):
    given_name: Name | None = None
    family_name: Name | None = None
    nhs_number: NhsNumber | None = None
    date_of_birth: IsoDate | None = Field(default=None, description="Not after today (or as_of).")
    expected_due_date: IsoDate | None = Field(
        default=None, description="For antenatal referrals: from 14 days ago to 294 days ahead."
    )

    @model_validator(mode="after")
    def _exactly_one_date(self) -> Self:
        if (self.date_of_birth is None) == (self.expected_due_date is None):
            raise ValueError("give exactly one of date_of_birth and expected_due_date")
        return self


class Caregiver(RequestModel):
    given_name: Name
    family_name: Name
    relationship: CaregiverRelationship
    phone: Phone | None = None
    nhs_number: NhsNumber | None = None


class Concerns(RequestModel):
    codes: list[Code] = Field(
        min_length=1,
        max_length=20,
        description="Concern codes from the active ruleset (GET /v1/pathway).",
    )
    description: Annotated[FreeText, Field(max_length=4000)] | None = None
    duration_weeks: Weeks | None = None

    @field_validator("codes")
    @classmethod
    def _no_repeats(cls, codes: list[str]) -> list[str]:
        if len(set(codes)) != len(codes):
            raise ValueError("codes must not repeat")
        return codes


class Safeguarding(RequestModel):
    """Stated explicitly on every referral, so that an immediate risk is never left out."""

    immediate_risk: JsonBool
    child_protection_plan: JsonBool
    child_in_need_plan: JsonBool


class Consent(RequestModel):
    caregiver_consent: JsonBool = Field(description="Must be true.")
    recorded_on: IsoDate

    @field_validator("caregiver_consent")
    @classmethod
    def _must_be_given(cls, given: bool) -> bool:
        if given is not True:
            raise ValueError("caregiver consent must be recorded as true before referring")
        return given


class ReferralCreate(RequestModel):
    """A referral as a partner system submits it."""

    referrer: Referrer
    infant: Infant
    caregivers: list[Caregiver] = Field(min_length=1, max_length=6)
    postcode: Postcode
    concerns: Concerns
    risk_factors: list[Code] = Field(default_factory=list, max_length=30)
    safeguarding: Safeguarding
    diagnosis: Annotated[FreeText, Field(max_length=2000)] | None = Field(
        default=None, description="Optional and never used in eligibility."
    )
    consent: Consent
    referrer_urgency: Literal["routine", "urgent"] = "routine"
    services_involved: list[ServiceInvolved] = Field(default_factory=list, max_length=20)

    @field_validator("risk_factors")
    @classmethod
    def _no_repeated_risks(cls, codes: list[str]) -> list[str]:
        if len(set(codes)) != len(codes):
            raise ValueError("risk_factors must not repeat")
        return codes

    def to_facts(self) -> ReferralFacts:
        return ReferralFacts(
            date_of_birth=self.infant.date_of_birth,
            expected_due_date=self.infant.expected_due_date,
            postcode=self.postcode,
            concern_codes=tuple(self.concerns.codes),
            risk_factors=tuple(self.risk_factors),
            concern_duration_weeks=self.concerns.duration_weeks,
            safeguarding=SafeguardingFacts(
                immediate_risk=self.safeguarding.immediate_risk,
                child_protection_plan=self.safeguarding.child_protection_plan,
                child_in_need_plan=self.safeguarding.child_in_need_plan,
            ),
            referrer_urgency=self.referrer_urgency,
            diagnosis=self.diagnosis,
        )


class Reason(ResponseModel):
    code: str
    message: str


class Contribution(ResponseModel):
    indicator: str
    weight: int


class Signpost(ResponseModel):
    """A service to contact instead (after Open Referral UK's service record)."""

    id: str
    name: str
    description: str
    url: str | None
    email: str | None


class RulesetIdentity(ResponseModel):
    id: str
    version: str
    sha256: str


class Criteria(ResponseModel):
    age: Literal["met", "not_met"]
    relationship_concern: Literal["met", "not_met"]
    catchment: Literal["met", "not_met"]
    diagnosis: Literal["not_required"]


class Decision(ResponseModel):
    eligible: bool
    outcome: Outcome
    priority: Priority
    provisional: bool
    safeguarding_alert: bool
    criteria: Criteria
    reasons: list[Reason]
    score: int | None
    contributions: list[Contribution] | None
    next_steps: list[str]
    signposts: list[Signpost]
    ruleset: RulesetIdentity


class PossibleDuplicate(ResponseModel):
    """An open referral that may be of the same infant (warn, never block)."""

    id: str
    reference: str
    status: ReferralStatus
    received_at: datetime
    match: Literal["nhs_number", "name_and_date"]


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
    referrer: Referrer
    infant: Infant
    caregivers: list[Caregiver]
    postcode: str
    concerns: Concerns
    risk_factors: list[str]
    safeguarding: Safeguarding
    diagnosis: str | None
    consent: Consent
    referrer_urgency: Literal["routine", "urgent"]
    services_involved: list[ServiceInvolved]
    decision: Decision


class ReferralStatusPublic(ResponseModel):
    """Where a referral stands, with no personal data."""

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
