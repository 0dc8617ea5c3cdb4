"""Intake: validate, decide and store a referral with its idempotency record and audit event.

On PostgreSQL the work takes five round trips (BEGIN; the key's lock and lookup; one statement
that inserts the referral and the key and locks an audit chain's head; the audit event; COMMIT):
every round trip costs a system call each way, which is most of what intake costs. SQLite, the
single-user development store, runs the same steps as separate statements.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import Boolean, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from eligibility import Decision, Ruleset, evaluate
from service.audit import chain
from service.core.canonical import canonical_json, sha256_hex
from service.core.context import RequestContext
from service.core.errors import Conflict, NotFound
from service.models import REFERRALS
from service.referrals import idempotency
from service.referrals.queries import COLUMNS, ReferralRecord, Submission, check_submission, find
from service.referrals.references import new_reference

INITIAL_STATUS = "awaiting_triage"
_TYPED = [bindparam(c.name, type_=c.type) for c in REFERRALS.columns]
_INSERT_SQL = (
    f"INSERT INTO referrals ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in COLUMNS)}) "
    "ON CONFLICT (reference) DO NOTHING RETURNING id"
)
# Text, built once: SQLAlchemy cannot cache a dialect INSERT … ON CONFLICT, and rebuilding and
# compiling it per request cost more than the rest of the request. The column list and types
# come from the table, so they cannot drift from it.
_INSERT_REFERRAL = text(_INSERT_SQL).bindparams(*_TYPED)
# PostgreSQL: the referral, its idempotency key (when there is one) and an audit head, together.
# A clash of random references inserts nothing (made = 0): draw again. A key that another
# instance committed between our lookup and now inserts no key (keyed = 0): that request was
# in flight when ours began, so ours is refused like any other in-flight duplicate.
_PG_STORE = text(
    f"WITH created AS ({_INSERT_SQL}), "
    "keyed AS (INSERT INTO idempotency_keys (org, key, request_sha256, referral_id, created_at) "
    "SELECT :key_org, :key_key, :key_sha256, id, :key_created_at FROM created WHERE :with_key "
    "ON CONFLICT (org, key) DO NOTHING RETURNING referral_id), "
    f"head AS ({chain.PG_FREE_HEAD_SQL}) "
    "SELECT (SELECT count(*) FROM created) AS made, (SELECT count(*) FROM keyed) AS keyed, "
    "head.chain, head.chain_seq, head.hash, head.seq "
    "FROM (SELECT 1) AS one LEFT JOIN head ON true"
).bindparams(
    *_TYPED,
    bindparam("key_org", type_=String()),
    bindparam("key_key", type_=String()),
    bindparam("key_sha256", type_=String()),
    bindparam("key_created_at", type_=REFERRALS.c.received_at.type),
    bindparam("with_key", type_=Boolean()),
)
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
        if claim.replay_of is not None:
            original = await find(db, claim.replay_of)
            if original is None:  # pragma: no cover - the record and referral commit together
                raise NotFound("The referral for this Idempotency-Key no longer exists.")
            await _audit_created(db, ctx, original, now, replayed=True)
            return Created(original, replayed=True)

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
    key = {
        "key_org": claim.org if claim else None,
        "key_key": claim.key if claim else None,
        "key_sha256": claim.request_sha256 if claim else None,
        "key_created_at": now,
        "with_key": claim is not None,
    }
    for _ in range(_REFERENCE_DRAWS):
        row = (await db.execute(_PG_STORE, {**referral.columns(), **key})).one()
        if row.made:
            if claim is not None and not row.keyed:
                raise Conflict("A request with this Idempotency-Key is still in progress.")
            # No free head (every chain busy): append() waits for one instead.
            head = (
                None
                if row.chain is None
                else chain.TakenHead(
                    int(row.chain), int(row.chain_seq), str(row.hash), int(row.seq)
                )
            )
            return referral, head
        referral = replace(referral, reference=new_reference())
    raise RuntimeError("could not draw a unique referral reference")


async def _store_separately(
    db: AsyncConnection, referral: ReferralRecord, claim: idempotency.Claim | None, now: datetime
) -> ReferralRecord:
    for _ in range(_REFERENCE_DRAWS):
        if (await db.execute(_INSERT_REFERRAL, referral.columns())).first() is not None:
            if claim is not None:
                await idempotency.record(db, claim, referral_id=referral.id, now=now)
            return referral
        referral = replace(referral, reference=new_reference())
    raise RuntimeError("could not draw a unique referral reference")


def _new_referral(
    ctx: RequestContext, submission: Submission, decision: Decision, now: datetime
) -> ReferralRecord:
    identity = decision.ruleset
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
        decision=decision.to_dict(),
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
