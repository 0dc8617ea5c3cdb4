"""Referral use cases: reading, status, listing and the dry run. Each appends its audit event."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from eligibility import Decision, Ruleset, evaluate
from service.audit import chain
from service.auth.scopes import SCOPE_TRIAGE
from service.core.canonical import as_utc
from service.core.context import RequestContext
from service.core.errors import AuditNote, FieldProblem, InvalidContent, NotFound, audited
from service.referrals import repository
from service.referrals.record import ReferralRecord
from service.referrals.repository import ListFilters
from service.referrals.submission import Submission, check_submission

__all__ = ["ListFilters", "Page", "check_eligibility", "list_referrals", "read_referral"]


async def get_visible_referral(
    *, db: AsyncConnection, ctx: RequestContext, referral_id: str, action: str
) -> ReferralRecord:
    """The referral if the caller may see it. Another organisation's is 404, and audited."""
    referral = await repository.find(db, referral_id)
    if referral is None:
        raise audited(
            NotFound("No referral with this id."),
            AuditNote(action, "referral", referral_id, "not_found"),
        )
    if referral.org != ctx.caller.org and not ctx.caller.has(SCOPE_TRIAGE):
        # Same answer as a missing referral: no oracle for another organisation's ids.
        raise audited(
            NotFound("No referral with this id."),
            AuditNote(
                "access.denied",
                "referral",
                referral_id,
                "denied",
                {"attempted": action, "reason": "other_organisation"},
            ),
        )
    return referral


async def read_referral(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    referral_id: str,
    now: datetime,
    status_only: bool = False,
) -> ReferralRecord:
    action = "referral.status_read" if status_only else "referral.read"
    db = await session.connection()
    referral = await get_visible_referral(db=db, ctx=ctx, referral_id=referral_id, action=action)
    await chain.append(
        db,
        ctx,
        action=action,
        resource_type="referral",
        resource_id=referral.id,
        outcome="success",
        now=now,
    )
    return referral


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ReferralRecord]
    next_cursor: str | None


def encode_cursor(referral: ReferralRecord) -> str:
    raw = json.dumps([as_utc(referral.received_at).isoformat(), referral.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        received, referral_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return as_utc(datetime.fromisoformat(received)), str(uuid.UUID(referral_id))
    except (ValueError, TypeError, AttributeError, OverflowError, binascii.Error):
        raise InvalidContent(
            [FieldProblem("cursor", "is not a cursor this service issued")]
        ) from None


async def list_referrals(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    filters: ListFilters,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> Page:
    """Newest first, keyset-paged on (received_at, id): referrals that arrive while a client is
    paging land before its cursor, so no page repeats or skips an item."""
    db = await session.connection()
    rows = await repository.newest_first(
        db,
        org=None if ctx.caller.has(SCOPE_TRIAGE) else ctx.caller.org,
        filters=filters,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    items, more = rows[:limit], len(rows) > limit
    await chain.append(
        db,
        ctx,
        action="referral.listed",
        resource_type="referral",
        resource_id=None,
        outcome="success",
        now=now,
        details={"returned": len(items)},
    )
    return Page(items, encode_cursor(items[-1]) if more and items else None)


async def check_eligibility(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    submission: Submission,
    ruleset: Ruleset,
    as_of: date,
    now: datetime,
) -> Decision:
    """The dry run: the same checks and rules as intake; only an audit event is stored."""
    check_submission(submission, ruleset, as_of)
    decision = evaluate(submission.facts, ruleset, as_of)
    await chain.append(
        await session.connection(),
        ctx,
        action="eligibility.checked",
        resource_type="eligibility",
        resource_id=None,
        outcome="success",
        now=now,
        details={
            "outcome": decision.outcome,
            "priority": decision.priority,
            "safeguarding_alert": decision.safeguarding_alert,
            "ruleset_version": decision.ruleset.version,
            "as_of": as_of.isoformat(),
        },
    )
    return decision
