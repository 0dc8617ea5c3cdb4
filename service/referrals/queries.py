"""Referral use cases: intake, reading, status and listing. Every one appends its audit event."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from eligibility import Decision, ReferralFacts, Ruleset, evaluate
from service.audit import chain
from service.auth.scopes import SCOPE_TRIAGE
from service.core.canonical import as_utc
from service.core.context import RequestContext
from service.core.errors import AuditNote, FieldProblem, InvalidContent, NotFound, audited
from service.models import REFERRALS
from service.referrals.validation import date_problems

INITIAL_STATUS = "awaiting_triage"
_REFERRALS = REFERRALS
COLUMNS = [c.name for c in _REFERRALS.columns]


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated referral body: normalised JSON (personal data) and the facts for the rules."""

    payload: dict[str, Any]
    facts: ReferralFacts
    consent_recorded_on: date | None


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    """A stored referral as plain data (the hot paths use SQLAlchemy Core, not the ORM)."""

    id: str
    reference: str
    org: str
    submitted_by: str
    received_at: datetime
    updated_at: datetime
    status: str
    outcome: str
    priority: str
    eligible: bool
    provisional: bool
    safeguarding_alert: bool
    ruleset_id: str
    ruleset_version: str
    ruleset_sha256: str
    payload: dict[str, Any]
    decision: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> ReferralRecord:
        return cls(**row._mapping)

    def columns(self) -> dict[str, Any]:
        # Not dataclasses.asdict: that deep-copies the payload and decision on every insert.
        return {name: getattr(self, name) for name in COLUMNS}


def check_submission(submission: Submission, ruleset: Ruleset, as_of: date) -> None:
    """Raise InvalidContent naming every field that the rules or the dates refuse."""
    facts = submission.facts
    problems = date_problems(
        date_of_birth=facts.date_of_birth,
        expected_due_date=facts.expected_due_date,
        consent_recorded_on=submission.consent_recorded_on,
        as_of=as_of,
    )
    problems += [
        FieldProblem(u.field, f"unknown code '{u.code}' for ruleset {ruleset.id}")
        for u in ruleset.unknown_codes(facts)
    ]
    if problems:
        raise InvalidContent(problems)


_SELECT_REFERRAL = select(_REFERRALS).where(_REFERRALS.c.id == bindparam("referral_id"))


async def find(db: AsyncConnection, referral_id: str) -> ReferralRecord | None:
    row = (await db.execute(_SELECT_REFERRAL, {"referral_id": referral_id})).first()
    return None if row is None else ReferralRecord.from_row(row)


async def get_visible_referral(
    *, db: AsyncConnection, ctx: RequestContext, referral_id: str, action: str
) -> ReferralRecord:
    """The referral if the caller may see it. Another organisation's is 404, and audited."""
    referral = await find(db, referral_id)
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
class ListFilters:
    status: str | None = None
    outcome: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None


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
    t = _REFERRALS.c
    query = select(_REFERRALS)
    if not ctx.caller.has(SCOPE_TRIAGE):
        query = query.where(t.org == ctx.caller.org)
    if filters.status:
        query = query.where(t.status == filters.status)
    if filters.outcome:
        query = query.where(t.outcome == filters.outcome)
    if filters.received_from:
        query = query.where(t.received_at >= as_utc(filters.received_from))
    if filters.received_to:
        query = query.where(t.received_at < as_utc(filters.received_to))
    if cursor:
        received_at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(t.received_at < received_at, and_(t.received_at == received_at, t.id < last_id))
        )
    query = query.order_by(t.received_at.desc(), t.id.desc()).limit(limit + 1)
    db = await session.connection()
    rows = [ReferralRecord.from_row(r) for r in await db.execute(query)]
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
