"""The audit trail: read (`audit:read`: one organisation's; `audit:read_all`: all) and verify."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CanAudit, CanAuditAll, ClockDep, SessionDep
from api.openapi_docs import responses
from api.schemas.audit import AuditEventsPage, AuditVerification
from api.schemas.common import DateTimeQuery
from service.audit import queries as audit_queries
from service.auth.scopes import SCOPE_AUDIT_ALL

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


@router.get(
    "",
    operation_id="audit-events-list",
    summary="List audit events",
    # An event's correlation_id is absent, not null, when it has none: its hash recomputes
    # from exactly the fields returned.
    response_model_exclude_unset=True,
    responses=responses(200, 401, 403, 422, 503),
)
async def list_audit_events(
    ctx: CanAudit,
    db: SessionDep,
    now: ClockDep,
    referral_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    since: Annotated[DateTimeQuery | None, Query(description="RFC 3339 date-time.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=19,
            pattern=r"^[0-9]+$",
            description="Opaque: the `next_cursor` of the previous page.",
        ),
    ] = None,
) -> AuditEventsPage:
    """Audit events in sequence order. Reading them is itself audited.

    With `audit:read`: only your organisation's events, those of its own clients and users and
    those about its referrals (the team's triage included), with `hash` and `prev_hash` null; a
    refused look-up of a referral id shows as the attempted action, `not_found`, no details,
    whether or not the referral exists elsewhere. With `audit:read_all`: every event, exactly
    as stored and hashed."""
    whole = ctx.caller.has(SCOPE_AUDIT_ALL)
    page = await audit_queries.list_events(
        session=db,
        ctx=ctx,
        view=audit_queries.View.WHOLE_TRAIL if whole else audit_queries.View.ORGANISATION,
        referral_id=str(referral_id) if referral_id else None,
        action=action,
        since=since,
        limit=limit,
        cursor=cursor,
        now=now.now,
    )
    return AuditEventsPage.model_validate({"items": page.items, "next_cursor": page.next_cursor})


@router.get(
    "/verify",
    operation_id="audit-events-verify",
    summary="Verify the audit trail",
    responses=responses(200, 401, 403, 503),
)
async def verify_audit_events(ctx: CanAuditAll, db: SessionDep, now: ClockDep) -> AuditVerification:
    """Verify the hash chains from their last verified checkpoints and report the first bad
    event, if any, and the head hash to anchor outside the database (scope `audit:read_all`: the
    whole trail, every organisation's). Only the events appended since the last verification are
    re-hashed; the chains found clean are checkpointed at their heads. Events at or before a
    checkpoint are re-checked only by the full run of `referral-service audit verify --full`."""
    result = await audit_queries.verify_chains(session=db, ctx=ctx, now=now.now)
    return AuditVerification.model_validate(result.to_dict())
