"""Referral endpoints: submit, read, status and list."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import (
    CanRead,
    CanSubmit,
    ClockDep,
    ServicesDep,
    SessionDep,
)
from api.json_body import StrictJsonRoute
from api.openapi_docs import REFERRAL_EXAMPLES, responses
from api.schemas.listing import ReferralListQuery
from api.schemas.referrals import ReferralCreate
from api.schemas.referrals_public import ReferralPublic, ReferralsPage, ReferralStatusPublic
from api.views import referral_public, referral_status, referral_summary, submission_of
from service.core import metrics
from service.core.unit_of_work import after_commit
from service.referrals import intake, queries

router = APIRouter(prefix="/v1/referrals", tags=["referrals"], route_class=StrictJsonRoute)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Same key and body within 24 hours returns the original referral again.",
    ),
]


@router.post(
    "",
    operation_id="referrals-create",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a referral",
    responses=responses(201, 400, 401, 403, 409, 413, 415, 422, 503, created=True),
)
async def create_referral(
    body: Annotated[ReferralCreate, REFERRAL_EXAMPLES],
    ctx: CanSubmit,
    db: SessionDep,
    now: ClockDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ReferralPublic:
    """Submit a referral (scope `referrals:submit`). It is checked against the active rules at
    once and comes back with a provisional decision, a short reference and its id."""
    request = intake.IntakeRequest(
        ctx=ctx,
        submission=submission_of(body),
        # From the services, not RulesetDep: one dependency less on the busiest route.
        ruleset=services.ruleset,
        now=now.now,
        today=now.today,
        idempotency_key=idempotency_key,
        idempotency_ttl=timedelta(hours=services.settings.idempotency_ttl_hours),
    )
    if services.intake_batches is not None:
        # Committed with the other intakes in flight (PostgreSQL's group commit) before this
        # returns; the request's own unit of work is left with nothing to do but a refusal.
        created = await services.intake_batches.submit(request)
    else:
        created = await intake.submit(db, request)
    response.headers["Location"] = f"{router.prefix}/{created.referral.id}"
    response.headers["ETag"] = etag(created.referral.version)
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        counter = metrics.REFERRALS.labels(created.referral.outcome, created.referral.priority)
        after_commit(db, counter.inc)
        if created.referral.safeguarding_alert:
            after_commit(db, metrics.SAFEGUARDING_ALERTS.inc)
    return referral_public(
        created.referral, caller=ctx.caller, possible_duplicates=created.possible_duplicates
    )


@router.get(
    "",
    operation_id="referrals-list",
    summary="List referrals",
    responses=responses(200, 401, 403, 422, 503),
)
async def list_referrals(
    ctx: CanRead,
    db: SessionDep,
    now: ClockDep,
    services: ServicesDep,
    query: Annotated[ReferralListQuery, Query()],
) -> ReferralsPage:
    """A page of referral summaries, newest first, with no personal data (scope
    `referrals:read` for your organisation's, `referrals:triage` for all)."""
    page = await queries.list_referrals(
        sort=str(query.sort),
        session=db,
        ctx=ctx,
        now=now.now,
        limit=query.limit,
        cursor=query.cursor,
        filters=queries.ListFilters(
            status=query.status_.value if query.status_ else None,
            outcome=query.outcome,
            received_from=query.received_from,
            received_to=query.received_to,
        ),
        audit=services.audit_batches,
    )
    return ReferralsPage(
        items=[referral_summary(r, today=now.today, zone=now.zone) for r in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{referral_id}",
    operation_id="referrals-get",
    summary="Read a referral",
    responses=responses(200, 401, 403, 404, 422, 503),
)
async def get_referral(
    referral_id: uuid.UUID,
    ctx: CanRead,
    db: SessionDep,
    now: ClockDep,
    services: ServicesDep,
    response: Response,
) -> ReferralPublic:
    """The whole referral with its decision (scope `referrals:read` for your organisation's,
    `referrals:triage` for any). Another organisation's referral is 404. The `ETag` is the
    version to send as `If-Match` with an action."""
    referral, duplicates = await queries.read_referral(
        session=db,
        ctx=ctx,
        referral_id=str(referral_id),
        now=now.now,
        audit=services.audit_batches,
    )
    response.headers["ETag"] = etag(referral.version)
    return referral_public(referral, caller=ctx.caller, possible_duplicates=duplicates)


@router.get(
    "/{referral_id}/status",
    operation_id="referrals-status",
    summary="Check a referral's status",
    responses=responses(200, 401, 403, 404, 422, 503),
)
async def get_referral_status(
    referral_id: uuid.UUID,
    ctx: CanRead,
    db: SessionDep,
    now: ClockDep,
    services: ServicesDep,
    response: Response,
) -> ReferralStatusPublic:
    """Where the referral stands, with no personal data (scope `referrals:read` or
    `referrals:triage`), and the actions you may take on it now."""
    referral = await queries.read_status(
        session=db,
        ctx=ctx,
        referral_id=str(referral_id),
        now=now.now,
        audit=services.audit_batches,
    )
    response.headers["ETag"] = etag(referral.version)
    return referral_status(referral, caller=ctx.caller)


def etag(version: int) -> str:
    """A weak ETag naming the referral's version: what `If-Match` must send back."""
    return f'W/"{version}"'
