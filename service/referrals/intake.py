"""Intake: validate, decide and store a referral with its idempotency record and audit event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from eligibility import Decision, Ruleset, evaluate
from service.audit import chain
from service.core.canonical import canonical_json, sha256_hex
from service.core.context import RequestContext
from service.core.errors import NotFound
from service.referrals import idempotency, repository
from service.referrals.duplicates import match_keys
from service.referrals.payloads import CURRENT_PAYLOAD_VERSION
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


@dataclass(frozen=True, slots=True)
class Created:
    referral: ReferralRecord
    replayed: bool


async def create_referral(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    submission: Submission,
    ruleset: Ruleset,
    now: datetime,
    today: date,
    idempotency_key: str | None,
    idempotency_ttl: timedelta,
) -> Created:
    """Validate, decide and store a referral with its idempotency record and audit event."""
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
            answered = as_answered(original, claim.replay.response)
            await _audit_created(db, ctx, answered, now, replayed=True)
            return Created(answered, replayed=True)

    referral = _new_referral(ctx, submission, evaluate(submission.facts, ruleset, today), now)
    if db.dialect.name == "postgresql":
        referral, head = await _store_postgres(db, referral, claim, now)
    else:
        referral, head = await _store_separately(db, referral, claim, now), None
    await _audit_created(db, ctx, referral, now, replayed=False, head=head)
    return Created(referral, replayed=False)


async def _store_postgres(
    db: AsyncConnection, referral: ReferralRecord, claim: idempotency.Claim | None, now: datetime
) -> tuple[ReferralRecord, chain.TakenHead | None]:
    for _ in range(_REFERENCE_DRAWS):
        key = None
        if claim is not None:
            key = claim.row(referral_id=referral.id, now=now, response=response_snapshot(referral))
        stored = await repository.store_with_key_and_head(db, referral, key)
        if stored.made:
            if claim is not None and not stored.keyed:
                raise idempotency.in_flight()
            # No free head (every chain busy): append() waits for one instead.
            return referral, stored.head
        referral = with_changes(referral, reference=new_reference())
    raise RuntimeError("could not draw a unique referral reference")


async def _store_separately(
    db: AsyncConnection, referral: ReferralRecord, claim: idempotency.Claim | None, now: datetime
) -> ReferralRecord:
    for _ in range(_REFERENCE_DRAWS):
        if await repository.insert_referral(db, referral):
            if claim is not None:
                key = claim.row(
                    referral_id=referral.id, now=now, response=response_snapshot(referral)
                )
                await repository.insert_key(db, key)
            return referral
        referral = with_changes(referral, reference=new_reference())
    raise RuntimeError("could not draw a unique referral reference")


def _new_referral(
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


async def _audit_created(
    db: AsyncConnection,
    ctx: RequestContext,
    referral: ReferralRecord,
    now: datetime,
    *,
    replayed: bool,
    head: chain.TakenHead | None = None,
) -> None:
    await chain.append(
        db,
        ctx,
        action="referral.created",
        resource_type="referral",
        resource_id=referral.id,
        outcome="replayed" if replayed else "success",
        now=now,
        details={
            "reference": referral.reference,
            "outcome": referral.outcome,
            "priority": referral.priority,
            "safeguarding_alert": referral.safeguarding_alert,
            "ruleset_version": referral.ruleset_version,
        },
        head=head,
    )
