"""Turning requests into service inputs and stored records into response schemas."""

from __future__ import annotations

from api.schemas.referrals import ReferralCreate
from api.schemas.referrals_public import (
    Decision,
    ReferralPublic,
    ReferralStatusPublic,
    ReferralSummary,
)
from service.core.canonical import as_utc
from service.referrals.queries import ReferralRecord, Submission


def submission_of(body: ReferralCreate) -> Submission:
    return Submission(
        payload=body.model_dump(mode="json"),
        facts=body.to_facts(),
        consent_recorded_on=body.consent.recorded_on,
    )


def referral_public(referral: ReferralRecord) -> ReferralPublic:
    # Read through the response schema alone: the request model's checks (consent true, NHS
    # number check digit, one date) were for intake and are never applied to stored data.
    return ReferralPublic.model_validate(
        {
            **referral.payload,
            "id": referral.id,
            "reference": referral.reference,
            "organisation": referral.org,
            "status": referral.status,
            "received_at": as_utc(referral.received_at),
            "updated_at": as_utc(referral.updated_at),
            "decision": referral.decision,
        }
    )


def referral_status(referral: ReferralRecord) -> ReferralStatusPublic:
    decision = Decision.model_validate(referral.decision)
    return ReferralStatusPublic(
        id=referral.id,
        reference=referral.reference,
        status=referral.status,
        outcome=decision.outcome,
        priority=decision.priority,
        provisional=referral.provisional,
        safeguarding_alert=decision.safeguarding_alert,
        next_steps=decision.next_steps,
        signposts=decision.signposts,
        updated_at=as_utc(referral.updated_at),
    )


def referral_summary(referral: ReferralRecord) -> ReferralSummary:
    return ReferralSummary(
        id=referral.id,
        reference=referral.reference,
        organisation=referral.org,
        status=referral.status,
        outcome=referral.outcome,
        priority=referral.priority,
        provisional=referral.provisional,
        safeguarding_alert=referral.safeguarding_alert,
        received_at=as_utc(referral.received_at),
        updated_at=as_utc(referral.updated_at),
    )
