"""Turning requests into service inputs and stored records into response schemas."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, tzinfo
from typing import Any

from api.schemas.referrals import ReferralCreate
from api.schemas.referrals_public import (
    ReferralPublic,
    ReferralStatusPublic,
    ReferralSummary,
)
from service.core.canonical import as_utc
from service.core.context import Caller
from service.referrals.lifecycle import available_actions
from service.referrals.queries import PossibleDuplicate, SummaryRow
from service.referrals.record import ReferralRecord
from service.referrals.submission import Submission


def submission_of(body: ReferralCreate) -> Submission:
    return Submission(
        payload=body.model_dump(mode="json"),
        facts=body.to_facts(),
        consent_recorded_on=body.consent.recorded_on,
    )


def referral_public(
    referral: ReferralRecord,
    *,
    caller: Caller,
    possible_duplicates: Sequence[PossibleDuplicate] = (),
) -> ReferralPublic:
    # Read through the response schema alone: the request model's checks (consent true, NHS
    # number check digit, one date) were for intake and are never applied to stored data.
    return ReferralPublic.model_validate(
        {
            **referral.payload,
            "id": referral.id,
            "reference": referral.reference,
            "organisation": referral.org,
            "status": referral.status,
            "version": referral.version,
            "provisional": referral.provisional,
            "available_actions": available_actions(caller, referral),
            "received_at": as_utc(referral.received_at),
            "updated_at": as_utc(referral.updated_at),
            "decision": referral.decision,
            "triage": referral.triage,
            "withdrawal": referral.withdrawal,
            "closure": referral.closure,
            "possible_duplicates": [d.to_dict() for d in possible_duplicates],
        }
    )


def referral_status(referral: ReferralRecord, *, caller: Caller) -> ReferralStatusPublic:
    # Only the three members of the stored decision that the status shows are read, and the
    # status schema validates them: validating the whole decision (criteria, reasons,
    # contributions, ruleset) first cost as much again as building the status itself.
    decision = referral.decision
    triage = referral.triage
    signposts: Any = decision["signposts"]
    if triage is not None and triage.get("signposts"):
        signposts = triage["signposts"]  # the clinician's choice replaces the rules'
    return ReferralStatusPublic.model_validate(
        {
            "id": referral.id,
            "reference": referral.reference,
            "status": referral.status,
            "version": referral.version,
            "available_actions": available_actions(caller, referral),
            "triaged_at": triage["decided_at"] if triage else None,
            # After triage the clinician's outcome and priority, not the rules'.
            "outcome": referral.outcome,
            "priority": referral.priority,
            "provisional": referral.provisional,
            "safeguarding_alert": decision["safeguarding_alert"],
            "next_steps": decision["next_steps"],
            "signposts": signposts,
            "updated_at": as_utc(referral.updated_at),
        }
    )


def referral_summary(referral: SummaryRow, *, today: date, zone: tzinfo) -> ReferralSummary:
    # Converted once: a page makes twenty of these, and as_utc was a third of their cost.
    received_at = as_utc(referral.received_at)
    received_on = received_at.astimezone(zone).date()
    return ReferralSummary(
        id=referral.id,
        reference=referral.reference,
        organisation=referral.org,
        status=referral.status,
        version=referral.version,
        waiting_days=max(0, (today - received_on).days),
        outcome=referral.outcome,
        priority=referral.priority,
        provisional=referral.provisional,
        safeguarding_alert=referral.safeguarding_alert,
        received_at=received_at,
        updated_at=as_utc(referral.updated_at),
    )
