"""Reading the audit trail: paging through events and verifying the chains, each audited too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit import chain, verification
from service.core.canonical import as_utc
from service.core.context import RequestContext
from service.core.errors import FieldProblem, InvalidContent
from service.models import AUDIT_EVENTS

_EVENTS = AUDIT_EVENTS


@dataclass(frozen=True, slots=True)
class EventsPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


async def list_events(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    referral_id: str | None,
    action: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> EventsPage:
    """Events in sequence order. The cursor is the last sequence number seen."""
    t = _EVENTS.c
    query = select(_EVENTS)
    if referral_id:
        query = query.where(t.resource_type == "referral", t.resource_id == referral_id)
    if action:
        query = query.where(t.action == action)
    if since:
        query = query.where(t.occurred_at >= as_utc(since))
    if cursor:
        if not cursor.isdigit() or len(cursor) > 19:
            raise InvalidContent([FieldProblem("cursor", "is not a cursor this service issued")])
        query = query.where(t.seq > int(cursor))
    rows = (await session.execute(query.order_by(t.seq).limit(limit + 1))).all()
    items = [{**chain.event_document(dict(r._mapping)), "hash": r.hash} for r in rows[:limit]]
    await chain.append(
        await session.connection(),
        ctx,
        action="audit.read",
        resource_type="audit",
        resource_id=referral_id,
        outcome="success",
        now=now,
        details={"returned": len(items)},
    )
    more = len(rows) > limit
    return EventsPage(items, str(items[-1]["seq"]) if more and items else None)


async def verify_chains(
    *, session: AsyncSession, ctx: RequestContext, now: datetime
) -> verification.Verification:
    """Verify first, then record that it was done (the new event is not part of the result)."""
    result = await verification.verify(session)
    await chain.append(
        await session.connection(),
        ctx,
        action="audit.verified",
        resource_type="audit",
        resource_id=None,
        outcome="success",
        now=now,
        details={"valid": result.valid, "events_checked": result.events_checked},
    )
    return result
