"""Reading the audit trail: paging through events and verifying the chains, each audited too."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, and_, case, func, literal, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit import chain, checkpoints, verification
from service.core.canonical import as_utc
from service.core.context import RequestContext
from service.core.errors import FieldProblem, InvalidContent
from service.models import AUDIT_EVENTS, REFERRALS

_EVENTS = AUDIT_EVENTS
_MAX_SEQ = 2**63 - 1  # BIGINT: a larger cursor cannot name an event, and the driver refuses it


class View(enum.Enum):
    """Which part of the trail a reader sees; the HTTP edge decides it from the caller's scopes
    (this package does not know about scopes)."""

    # Every event, exactly as stored and hashed (the team's information governance).
    WHOLE_TRAIL = "whole_trail"
    # The caller's organisation's events only, its refused probes made indistinguishable.
    ORGANISATION = "organisation"


@dataclass(frozen=True, slots=True)
class EventsPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class _OrganisationView:
    """The SQL of one organisation's view of the trail.

    `visible`: events whose actor is the organisation, or whose resource is one of its
    referrals (e.g. the team's triage reading them).

    `probe`: the organisation's own refused look-ups of a referral that is not its own. Another
    organisation's referral is stored as `access.denied`/`denied`, a missing one as the
    attempted action with `not_found`; answering both with the same 404 means nothing, if the
    prober can then read back which it was. So this view shows both as the attempted action,
    `not_found`, with no details, and `action` filters match that projected action.
    """

    source: FromClause
    visible: ColumnElement[bool]
    probe: ColumnElement[bool]
    action: ColumnElement[Any]

    @classmethod
    def of(cls, org: str) -> _OrganisationView:
        t = _EVENTS.c
        # A primary-key look-up per event read, rather than a set of all the organisation's
        # referrals built per page.
        own = REFERRALS.alias("own_referral")
        source = _EVENTS.outerjoin(
            own,
            and_(t.resource_type == "referral", own.c.id == t.resource_id, own.c.org == org),
        )
        about_own_referral = own.c.id.is_not(None)
        denied = and_(t.action == "access.denied", t.outcome == "denied")
        probe = and_(
            t.actor_org == org,
            t.resource_type == "referral",
            t.resource_id.is_not(None),
            or_(t.outcome == "not_found", denied),
            ~about_own_referral,
        )
        attempted = func.coalesce(t.details["attempted"].as_string(), t.action)
        return cls(
            source=source,
            visible=or_(t.actor_org == org, about_own_referral),
            probe=probe,
            action=case((and_(probe, denied), attempted), else_=t.action),
        )

    def select(self) -> Select[Any]:
        return (
            select(
                _EVENTS,
                case((self.probe, literal(1)), else_=literal(0)).label("is_probe"),
                self.action.label("shown_action"),
            )
            .select_from(self.source)
            .where(self.visible)
        )


def _as_stored(row: Row[Any]) -> dict[str, Any]:
    return {**chain.event_document(dict(row._mapping)), "hash": row.hash}


def _as_organisation_sees(row: Row[Any], organisation: str) -> dict[str, Any]:
    event = chain.event_document(dict(row._mapping))
    if row.actor_org != organisation:
        # Another organisation's label for its own request (the team's, reading one of this
        # organisation's referrals): theirs, not this organisation's to see.
        event.pop("correlation_id", None)
    if row.is_probe:
        event.update(action=row.shown_action, outcome="not_found", details={})
    # No hashes in this view. A probe's real hash (or the prev_hash of the event after it, or
    # that event's hash, and so on down its chain) can be recomputed from each candidate
    # stored form and compared: the oracle again. Nor can the view verify anything: its chains
    # run through other organisations' events. Verifying is the whole trail's business.
    event.update(prev_hash=None, hash=None)
    return event


def _cursor_seq(cursor: str) -> int:
    if not cursor.isdigit() or len(cursor) > 19 or int(cursor) > _MAX_SEQ:
        raise InvalidContent([FieldProblem("cursor", "is not a cursor this service issued")])
    return int(cursor)


async def list_events(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    view: View,
    referral_id: str | None,
    action: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> EventsPage:
    """Events in sequence order. The cursor is the last sequence number seen."""
    t = _EVENTS.c
    after = _cursor_seq(cursor) if cursor else None
    query: Select[Any]
    shown_action: ColumnElement[Any]
    present: Callable[[Row[Any]], dict[str, Any]]
    if view is View.WHOLE_TRAIL:
        query, shown_action, present = select(_EVENTS), t.action, _as_stored
    else:
        organisation = _OrganisationView.of(ctx.caller.org)
        query, shown_action = organisation.select(), organisation.action
        present = functools.partial(_as_organisation_sees, organisation=ctx.caller.org)
    if referral_id:
        query = query.where(t.resource_type == "referral", t.resource_id == referral_id)
    if action:
        query = query.where(shown_action == action)
    if since:
        query = query.where(t.occurred_at >= as_utc(since))
    if after is not None:
        query = query.where(t.seq > after)
    rows = (await session.execute(query.order_by(t.seq).limit(limit + 1))).all()
    items = [present(r) for r in rows[:limit]]
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
    """Verify what was appended since each chain's checkpoint, move the checkpoints of the
    chains found clean, then record that it was done (the new event is not part of the result).

    Incremental only: a full re-verification reads the whole trail, which no HTTP caller may
    make the service do (that is `referral-service audit verify --full`)."""
    result = await verification.verify(session, incremental=True)
    db = await session.connection()
    await checkpoints.advance(db, result.reached, now)
    await chain.append(
        db,
        ctx,
        action="audit.verified",
        resource_type="audit",
        resource_id=None,
        outcome="success",
        now=now,
        details={
            "valid": result.valid,
            "mode": "incremental",
            "events_checked": result.events_checked,
        },
    )
    return result
