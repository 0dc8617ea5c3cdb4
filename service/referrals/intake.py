"""Intake: validate, decide and store a referral with its idempotency record and audit event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from eligibility import Decision, Ruleset, evaluate
from service.audit import chain
from service.core import events as domain_events
from service.core.canonical import canonical_json, sha256_hex
from service.core.context import RequestContext
from service.core.errors import NotFound
from service.referrals import events, idempotency, repository
from service.referrals.duplicates import match_keys
from service.referrals.payloads import CURRENT_PAYLOAD_VERSION
from service.referrals.queries import PossibleDuplicate, possible_duplicates
from service.referrals.record import (
    ReferralRecord,
    as_answered,
    response_snapshot,
    with_changes,
)
from service.referrals.references import new_reference
from service.referrals.statuses import INITIAL_STATUS
from service.referrals.submission import Submission, check_submission

_REFERENCE_DRAWS = 5
CREATED_ACTION = "referral.created"


@dataclass(frozen=True, slots=True)
class Created:
    referral: ReferralRecord
    replayed: bool
    # Open referrals of the same infant that this caller may read (warn, never block).
    possible_duplicates: list[PossibleDuplicate] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IntakeRequest:
    """One request to create a referral, as the API hands it to intake."""

    ctx: RequestContext
    submission: Submission
    ruleset: Ruleset
    now: datetime
    today: date
    idempotency_key: str | None
    idempotency_ttl: timedelta


async def submit(session: AsyncSession, request: IntakeRequest) -> Created:
    """Validate, decide and store a referral with its idempotency record and audit event, in
    `session`'s transaction."""
    ctx, submission, ruleset, now, today = (
        request.ctx,
        request.submission,
        request.ruleset,
        request.now,
        request.today,
    )
    idempotency_key, idempotency_ttl = request.idempotency_key, request.idempotency_ttl
    check_submission(submission, ruleset, today)
    db = await session.connection()
    claim = None
    if idempotency_key is not None:
        claim = await idempotency.claim(
            db,
            org=ctx.caller.org,
            key=idempotency_key,
            request_sha256=sha256_hex(canonical_json(submission.payload)),
            now=now,
            ttl=idempotency_ttl,
        )
        if claim.replay is not None:
            original = await repository.find(db, claim.replay.referral_id)
            if original is None:  # pragma: no cover - the record and referral commit together
                raise NotFound("The referral for this Idempotency-Key no longer exists.")
            # The first response again, not the referral as it has become since.
            first = claim.replay.response or {}
            answered = as_answered(original, first)
            duplicates = [
                PossibleDuplicate.from_dict(d) for d in first.get("possible_duplicates", [])
            ]
            await _audit_created(db, ctx, answered, now, replayed=True, duplicates=duplicates)
            return Created(answered, replayed=True, possible_duplicates=duplicates)

    referral = new_referral(ctx, submission, evaluate(submission.facts, ruleset, today), now)
    # Looked up before the insert: the audit head the insert takes stays locked until commit.
    duplicates = await possible_duplicates(
        db,
        ctx,
        referral_id=referral.id,
        nhs_number=referral.match_nhs_number,
        name_key=referral.match_name_key,
    )
    first_response = answer_snapshot(referral, duplicates)
    if db.dialect.name == "postgresql":
        referral, head = await _store_postgres(db, referral, claim, now, first_response)
    else:
        referral, head = await _store_separately(db, referral, claim, now, first_response), None
    await _audit_created(db, ctx, referral, now, replayed=False, head=head, duplicates=duplicates)
    # In this transaction: the outbox row commits with the referral or not at all.
    await domain_events.publish(session, events.created(referral, now))
    return Created(referral, replayed=False, possible_duplicates=duplicates)


async def _store_postgres(
    db: AsyncConnection,
    referral: ReferralRecord,
    claim: idempotency.Claim | None,
    now: datetime,
    first_response: dict[str, Any],
) -> tuple[ReferralRecord, chain.TakenHead | None]:
    for _ in range(_REFERENCE_DRAWS):
        key = None
        if claim is not None:
            response = {**first_response, "reference": referral.reference}
            key = claim.row(referral_id=referral.id, now=now, response=response)
        stored = await repository.store_with_key_and_head(db, referral, key)
        if stored.made:
            if claim is not None and not stored.keyed:
                raise idempotency.in_flight()
            # No free head (every chain busy): append() waits for one instead.
            return referral, stored.head
        referral = with_changes(referral, reference=new_reference())
    raise RuntimeError("could not draw a unique referral reference")


async def _store_separately(
    db: AsyncConnection,
    referral: ReferralRecord,
    claim: idempotency.Claim | None,
    now: datetime,
    first_response: dict[str, Any],
) -> ReferralRecord:
    for _ in range(_REFERENCE_DRAWS):
        if await repository.insert_referral(db, referral):
            if claim is not None:
                response = {**first_response, "reference": referral.reference}
                key = claim.row(referral_id=referral.id, now=now, response=response)
                await repository.insert_key(db, key)
            return referral
        referral = with_changes(referral, reference=new_reference())
    raise RuntimeError("could not draw a unique referral reference")


def answer_snapshot(
    referral: ReferralRecord, duplicates: list[PossibleDuplicate]
) -> dict[str, Any]:
    """What the first answer showed, kept with the idempotency key for replays."""
    return {
        **response_snapshot(referral),
        "possible_duplicates": [d.to_dict() for d in duplicates],
    }


def new_referral(
    ctx: RequestContext, submission: Submission, decision: Decision, now: datetime
) -> ReferralRecord:
    identity = decision.ruleset
    keys = match_keys(submission.payload)
    return ReferralRecord(
        id=str(uuid.uuid4()),
        reference=new_reference(),
        org=ctx.caller.org,
        submitted_by=ctx.caller.sub,
        received_at=now,
        updated_at=now,
        status=INITIAL_STATUS,
        outcome=decision.outcome,
        priority=decision.priority,
        eligible=decision.eligible,
        provisional=decision.provisional,
        safeguarding_alert=decision.safeguarding_alert,
        ruleset_id=identity.id,
        ruleset_version=identity.version,
        ruleset_sha256=identity.sha256,
        payload=submission.payload,
        payload_version=CURRENT_PAYLOAD_VERSION,
        decision=decision.to_dict(),
        version=1,
        triage=None,
        withdrawal=None,
        closure=None,
        match_nhs_number=keys.nhs_number,
        match_name_key=keys.name_key,
    )


def created_audit_details(
    referral: ReferralRecord, duplicates: list[PossibleDuplicate]
) -> dict[str, Any]:
    """The details of a `referral.created` event: ids, codes and counts, nothing personal."""
    return {
        "reference": referral.reference,
        "outcome": referral.outcome,
        "priority": referral.priority,
        "safeguarding_alert": referral.safeguarding_alert,
        "ruleset_version": referral.ruleset_version,
        "possible_duplicates": len(duplicates),
    }


async def _audit_created(
    db: AsyncConnection,
    ctx: RequestContext,
    referral: ReferralRecord,
    now: datetime,
    *,
    replayed: bool,
    duplicates: list[PossibleDuplicate],
    head: chain.TakenHead | None = None,
) -> None:
    await chain.append(
        db,
        ctx,
        action=CREATED_ACTION,
        resource_type="referral",
        resource_id=referral.id,
        outcome="replayed" if replayed else "success",
        now=now,
        details=created_audit_details(referral, duplicates),
        head=head,
    )
