"""Referral use cases: reading, status, listing and the dry run. Each appends its audit event."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from eligibility import Decision, Ruleset, evaluate
from service.audit import chain, group_append
from service.audit.group_append import AuditBatches
from service.auth.scopes import SCOPE_TRIAGE
from service.core.canonical import as_utc
from service.core.context import RequestContext
from service.core.errors import AuditNote, FieldProblem, InvalidContent, NotFound, audited
from service.referrals import repository
from service.referrals.record import ReferralRecord
from service.referrals.repository import ListFilters, SummaryRow
from service.referrals.statuses import OPEN_STATUSES
from service.referrals.submission import Submission, check_submission

__all__ = [
    "ListFilters",
    "Page",
    "SummaryRow",
    "PossibleDuplicate",
    "check_eligibility",
    "duplicates_of",
    "list_referrals",
    "read_history",
    "read_referral",
    "read_status",
]


async def get_visible_referral(
    *, db: AsyncConnection, ctx: RequestContext, referral_id: str, action: str
) -> ReferralRecord:
    """The referral if the caller may see it. Another organisation's is 404, and audited."""
    return _visible(ctx, await repository.find(db, referral_id), referral_id, action)


def _visible(
    ctx: RequestContext, referral: ReferralRecord | None, referral_id: str, action: str
) -> ReferralRecord:
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


async def read_status(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    referral_id: str,
    now: datetime,
    audit: AuditBatches | None = None,
) -> ReferralRecord:
    """The referral as its status shows it, with its audit event: on PostgreSQL without its
    payload (an empty dict), which a status shows none of."""
    action = "referral.status_read"
    async with reading(session, audit) as db:
        referral = _visible(ctx, await repository.find_status(db, referral_id), referral_id, action)
    entry = chain.Entry(ctx, action, "referral", referral.id, "success", now, {})
    await group_append.record(session, audit, entry)
    return referral


async def read_referral(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    referral_id: str,
    now: datetime,
    audit: AuditBatches | None = None,
) -> tuple[ReferralRecord, list[PossibleDuplicate]]:
    """The whole referral for its reader, and the possible duplicates this reader may see (on
    the same connection), with its audit event."""
    action = "referral.read"
    async with reading(session, audit) as db:
        referral = _visible(ctx, await repository.find(db, referral_id), referral_id, action)
        duplicates = await _duplicates_of(db, ctx, referral)
    entry = chain.Entry(ctx, action, "referral", referral.id, "success", now, {})
    await group_append.record(session, audit, entry)
    return referral, duplicates


@asynccontextmanager
async def reading(
    session: AsyncSession, audit: AuditBatches | None
) -> AsyncIterator[AsyncConnection]:
    """The connection a read runs on.

    With the reads' group commit (`audit`, PostgreSQL): a pooled connection of its own, outside
    any transaction, given back before the read's event is recorded. Each statement is one
    consistent read on its own and the event commits in the batch, so BEGIN and COMMIT would
    be two round trips for nothing; and a read that held its connection while it waited for
    its batch could leave the batch none to commit with. Without it: the unit of work's
    connection, whose transaction also appends the event."""
    if audit is None:
        yield await session.connection()
        return
    engine = session.bind
    if not isinstance(engine, AsyncEngine):
        raise TypeError("reads with batched audit events need a session bound to an engine")
    async with engine.connect() as db:
        yield await db.execution_options(isolation_level="AUTOCOMMIT")


@dataclass(frozen=True, slots=True)
class Page:
    items: list[SummaryRow]
    next_cursor: str | None


def encode_cursor(referral: ReferralRecord | SummaryRow, sort: str = "received") -> str:
    position: list[Any] = [as_utc(referral.received_at).isoformat(), referral.id]
    if sort == "triage":
        position = ["triage", repository.worklist_rank(referral), *position]
    raw = json.dumps(position).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "received") -> tuple[Any, ...]:
    """The position a cursor names, for the order it was issued for (or 422 naming it)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(position, list):
            raise ValueError("not a position")
        if sort == "triage":
            kind, rank, received, referral_id = position
            if kind != "triage" or not isinstance(rank, int) or not 0 <= rank <= 3:
                raise ValueError("not a worklist position")
            return rank, _moment(received), str(uuid.UUID(referral_id))
        received, referral_id = position
        return _moment(received), str(uuid.UUID(referral_id))
    except (ValueError, TypeError, AttributeError, OverflowError, binascii.Error):
        raise InvalidContent(
            [FieldProblem("cursor", "is not a cursor this service issued for this sort")]
        ) from None


def _moment(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a time")
    return as_utc(datetime.fromisoformat(value))


async def list_referrals(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    filters: ListFilters,
    limit: int,
    cursor: str | None,
    now: datetime,
    sort: str = "received",
    audit: AuditBatches | None = None,
) -> Page:
    """Newest first (`received`), or the team's worklist order (`triage`), keyset-paged: a
    cursor names a position, not an offset, so referrals that arrive or move while a client
    is paging never make a page repeat or skip another item."""
    org = None if ctx.caller.has(SCOPE_TRIAGE) else ctx.caller.org
    async with reading(session, audit) as db:
        if sort == "triage":
            after = decode_cursor(cursor, sort) if cursor else None
            rows = await repository.worklist_order(
                db, org=org, filters=filters, after=after, limit=limit + 1
            )
        else:
            before = decode_cursor(cursor) if cursor else None
            rows = await repository.newest_first(
                db, org=org, filters=filters, before=before, limit=limit + 1
            )
    items, more = rows[:limit], len(rows) > limit
    details = {"returned": len(items)}
    entry = chain.Entry(ctx, "referral.listed", "referral", None, "success", now, details)
    await group_append.record(session, audit, entry)
    return Page(items, encode_cursor(items[-1], sort) if more and items else None)


async def check_eligibility(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    submission: Submission,
    ruleset: Ruleset,
    as_of: date,
    now: datetime,
    audit: AuditBatches | None = None,
) -> Decision:
    """The dry run: the same checks and rules as intake; only an audit event is stored."""
    check_submission(submission, ruleset, as_of)
    decision = evaluate(submission.facts, ruleset, as_of)
    details = {
        "outcome": decision.outcome,
        "priority": decision.priority,
        "safeguarding_alert": decision.safeguarding_alert,
        "ruleset_version": decision.ruleset.version,
        "as_of": as_of.isoformat(),
    }
    entry = chain.Entry(ctx, "eligibility.checked", "eligibility", None, "success", now, details)
    await group_append.record(session, audit, entry)
    return decision


@dataclass(frozen=True, slots=True)
class PossibleDuplicate:
    """An open referral that may be of the same infant: ids and status only, no personal data."""

    id: str
    reference: str
    status: str
    received_at: datetime
    match: str  # "nhs_number" or "name_and_date"

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "received_at": as_utc(self.received_at).isoformat(),
            "match": self.match,
        }

    @classmethod
    def of(cls, row: repository.DuplicateRow) -> PossibleDuplicate:
        return cls(row.id, row.reference, row.status, row.received_at, row.match)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> PossibleDuplicate:
        return cls(
            data["id"],
            data["reference"],
            data["status"],
            datetime.fromisoformat(data["received_at"]),
            data["match"],
        )


async def possible_duplicates(
    db: AsyncConnection,
    ctx: RequestContext,
    *,
    referral_id: str,
    nhs_number: str | None,
    name_key: str | None,
) -> list[PossibleDuplicate]:
    """Open referrals of the same infant that this caller may read: the referrer sees its own
    organisation's, the team sees every organisation's."""
    found = await repository.possible_duplicates(
        db,
        referral_id=referral_id,
        nhs_number=nhs_number,
        name_key=name_key,
        open_statuses=DUPLICATE_STATUSES,
        org=duplicates_seen_by(ctx),
    )
    return [PossibleDuplicate.of(r) for r in found]


DUPLICATE_STATUSES = frozenset(str(s) for s in OPEN_STATUSES)


def duplicates_seen_by(ctx: RequestContext) -> str | None:
    """Whose referrals a caller is shown as possible duplicates: the referrer its own
    organisation's, the team (None) every organisation's."""
    return None if ctx.caller.has(SCOPE_TRIAGE) else ctx.caller.org


async def duplicates_of(
    *, session: AsyncSession, ctx: RequestContext, referral: ReferralRecord
) -> list[PossibleDuplicate]:
    """For the team's view of a referral: the other open referrals of the same infant."""
    return await _duplicates_of(await session.connection(), ctx, referral)


async def _duplicates_of(
    db: AsyncConnection, ctx: RequestContext, referral: ReferralRecord
) -> list[PossibleDuplicate]:
    return await possible_duplicates(
        db,
        ctx,
        referral_id=referral.id,
        nhs_number=referral.match_nhs_number,
        name_key=referral.match_name_key,
    )


async def read_history(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    referral_id: str,
    now: datetime,
    audit: AuditBatches | None = None,
) -> list[repository.HistoryLine]:
    """The referral's moves, intake first: statuses, actions, times, organisations and reason
    codes only (never a comment or a person)."""
    action = "referral.history_read"
    async with reading(session, audit) as db:
        # Outside a transaction these are two reads, not one snapshot; enough here, since a
        # referral never changes organisation and its moves are only ever appended.
        referral = await get_visible_referral(
            db=db, ctx=ctx, referral_id=referral_id, action=action
        )
        lines = await repository.history(db, referral.id)
    details = {"returned": len(lines)}
    entry = chain.Entry(ctx, action, "referral", referral.id, "success", now, details)
    await group_append.record(session, audit, entry)
    return lines
