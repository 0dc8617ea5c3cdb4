"""Request schemas for referrals: strict (the HTTP shape; the rules never see these).

Responses have schemas of their own in `api.schemas.referrals_public`, which never re-validate
what was stored.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from api.schemas.common import (
    Email,
    FreeText,
    IsoDate,
    JsonBool,
    Name,
    NhsNumber,
    Phone,
    Postcode,
    RequestModel,
    Weeks,
)
from api.schemas.vocabulary import (
    CaregiverRelationship,
    ConcernCode,
    ReferrerRole,
    RiskFactorCode,
    ServiceInvolved,
    Urgency,
)
from eligibility import ReferralFacts, SafeguardingFacts

# "Exactly one of the two dates" in JSON Schema without `oneOf`: client generators turn a
# `oneOf` into a union of partial objects (openapi-python-client made `Born` with only the date,
# leaving the NHS number and names untyped), while they ignore if/then/else and keep one object
# with every field typed. Validators (and schemathesis) still read it; the model enforces it.
# A null date counts as absent, as in the model.
EXACTLY_ONE_DATE: dict[str, Any] = {
    "if": {"required": ["date_of_birth"], "properties": {"date_of_birth": {"type": "string"}}},
    "then": {"properties": {"expected_due_date": {"type": "null"}}},
    "else": {
        "required": ["expected_due_date"],
        "properties": {"expected_due_date": {"type": "string"}},
    },
}


class Referrer(RequestModel):
    name: Name
    role: ReferrerRole
    email: Email | None = None
    phone: Phone | None = None


class Infant(RequestModel):
    """The baby. Exactly one of `date_of_birth` and `expected_due_date` (antenatal referrals)."""

    model_config = ConfigDict(json_schema_extra=EXACTLY_ONE_DATE)

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
    codes: list[ConcernCode] = Field(
        min_length=1,
        max_length=20,
        description="Concern codes from the active ruleset (GET /v1/pathway).",
        json_schema_extra={"uniqueItems": True},
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
    caregiver_consent: JsonBool = Field(
        description="Must be true.", json_schema_extra={"const": True}
    )
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
    risk_factors: list[RiskFactorCode] = Field(
        default_factory=list, max_length=30, json_schema_extra={"uniqueItems": True}
    )
    safeguarding: Safeguarding
    diagnosis: Annotated[FreeText, Field(max_length=2000)] | None = Field(
        default=None, description="Optional and never used in eligibility."
    )
    consent: Consent
    referrer_urgency: Urgency = Urgency.routine
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
