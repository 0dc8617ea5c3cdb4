"""Webhook subscriptions: create, list, delete, rotate the secret, ping, deliveries, retry."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CanManageWebhooks, ClockDep, ServicesDep, SessionDep
from api.json_body import StrictJsonRoute
from api.openapi_docs import responses
from api.schemas.webhooks import (
    WebhookDeliveryPublic,
    WebhookSubscriptionCreate,
    WebhookSubscriptionPublic,
    WebhookSubscriptionWithSecret,
)
from service.audit import chain
from service.auth.scopes import SCOPE_TRIAGE
from service.core.context import RequestContext
from service.notifications import subscriptions
from service.notifications.repository import DeliveryRow, SubscriptionRow

SUBSCRIPTION_EXAMPLES = Body(
    openapi_examples={
        "status_changes": {
            "summary": "A referrer: every move of your organisation's referrals",
            "value": {
                "url": "https://partner.example/hooks/referrals",
                "events": ["referral.status_changed"],
                "description": "Case management system",
            },
        },
        "team": {
            "summary": "The team (with referrals:triage): new referrals, alerts first",
            "value": {
                "url": "https://team.example/hooks/referrals",
                "events": [
                    "referral.safeguarding_alert",
                    "referral.created",
                    "referral.status_changed",
                ],
            },
        },
    }
)

# Within the column's BIGINT: a larger number is a bad request, not a database error.
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(
    prefix="/v1/webhook-subscriptions", tags=["webhooks"], route_class=StrictJsonRoute
)


def _public(row: SubscriptionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": row.events,
        "description": row.description,
        "team": row.team,
        "created_at": row.created_at,
        "disabled_at": row.disabled_at,
        "disabled_reason": row.disabled_reason,
    }


def _delivery(row: DeliveryRow) -> WebhookDeliveryPublic:
    return WebhookDeliveryPublic(
        id=row.id,
        event_id=row.event_id,
        type=row.event_type,
        referral_id=row.referral_id,
        status=row.status,
        attempt=row.attempts,
        status_code=row.last_status_code,
        error=row.last_error,
        at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
    )


async def _audit(
    db: AsyncSession, ctx: RequestContext, action: str, row: SubscriptionRow, now: ClockDep
) -> None:
    # No secret and no URL (its path or query may carry a token of the receiver's): the
    # subscription's id, events and team flag are what an auditor needs.
    await chain.append(
        await db.connection(),
        ctx,
        action=action,
        resource_type="webhook_subscription",
        resource_id=row.id,
        outcome="success",
        now=now.now,
        details={"events": row.events, "team": row.team},
    )


@router.post(
    "",
    operation_id="webhook-subscriptions-create",
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe to events",
    responses=responses(201, 400, 401, 403, 409, 413, 415, 422, 503),
)
async def create_subscription(
    body: Annotated[WebhookSubscriptionCreate, SUBSCRIPTION_EXAMPLES],
    ctx: CanManageWebhooks,
    db: SessionDep,
    now: ClockDep,
    services: ServicesDep,
) -> WebhookSubscriptionWithSecret:
    """Subscribe a URL of your organisation's to events (scope `webhooks:manage`). The answer
    carries the signing secret, shown this once."""
    assert services.url_policy is not None
    made = await subscriptions.create(
        session=db,
        ctx=ctx,
        url=body.url,
        events=[str(e) for e in body.events],
        description=body.description,
        team=ctx.caller.has(SCOPE_TRIAGE),
        policy=services.url_policy,
        box=services.secret_box,
        now=now.now,
        max_per_org=services.settings.webhook_max_subscriptions,
    )
    await _audit(db, ctx, "webhook.subscription_created", made.subscription, now)
    return WebhookSubscriptionWithSecret(**_public(made.subscription), secret=made.secret)


@router.get(
    "",
    operation_id="webhook-subscriptions-list",
    summary="Your organisation's subscriptions",
    responses=responses(200, 401, 403, 503),
)
async def list_subscriptions(
    ctx: CanManageWebhooks, db: SessionDep
) -> list[WebhookSubscriptionPublic]:
    """Your organisation's webhook subscriptions, oldest first; never their secrets."""
    rows = await subscriptions.list_own(session=db, ctx=ctx)
    return [WebhookSubscriptionPublic(**_public(r)) for r in rows]


@router.delete(
    "/{subscription_id}",
    operation_id="webhook-subscriptions-delete",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a subscription",
    responses=responses(204, 401, 403, 404, 422, 503),
)
async def delete_subscription(
    subscription_id: uuid.UUID, ctx: CanManageWebhooks, db: SessionDep, now: ClockDep
) -> Response:
    """Delete the subscription and every delivery still waiting for it."""
    found = await subscriptions.owned(session=db, ctx=ctx, subscription_id=str(subscription_id))
    await subscriptions.delete(session=db, ctx=ctx, subscription_id=found.id)
    await _audit(db, ctx, "webhook.subscription_deleted", found, now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{subscription_id}/rotate-secret",
    operation_id="webhook-subscriptions-rotate-secret",
    summary="Rotate the signing secret",
    responses=responses(200, 401, 403, 404, 422, 503),
)
async def rotate_secret(
    subscription_id: uuid.UUID,
    ctx: CanManageWebhooks,
    db: SessionDep,
    now: ClockDep,
    services: ServicesDep,
) -> WebhookSubscriptionWithSecret:
    """A new signing secret, shown this once. The old one keeps signing for 24 hours: each
    message carries both signatures until then."""
    made = await subscriptions.rotate_secret(
        session=db,
        ctx=ctx,
        subscription_id=str(subscription_id),
        box=services.secret_box,
        now=now.now,
    )
    await _audit(db, ctx, "webhook.subscription_secret_rotated", made.subscription, now)
    return WebhookSubscriptionWithSecret(**_public(made.subscription), secret=made.secret)


@router.post(
    "/{subscription_id}/ping",
    operation_id="webhook-subscriptions-ping",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a ping",
    responses=responses(202, 401, 403, 404, 422, 503),
)
async def ping(
    subscription_id: uuid.UUID, ctx: CanManageWebhooks, db: SessionDep, now: ClockDep
) -> WebhookDeliveryPublic:
    """Queue a `ping` event to the subscription now; follow it in its deliveries."""
    row = await subscriptions.ping(
        session=db, ctx=ctx, subscription_id=str(subscription_id), now=now.now
    )
    return _delivery(row)


@router.get(
    "/{subscription_id}/deliveries",
    operation_id="webhook-subscriptions-deliveries",
    summary="Recent deliveries",
    responses=responses(200, 401, 403, 404, 422, 503),
)
async def deliveries(
    subscription_id: uuid.UUID, ctx: CanManageWebhooks, db: SessionDep
) -> list[WebhookDeliveryPublic]:
    """The subscription's 50 most recent deliveries, newest first: event, attempts, the last
    attempt's status code or error class, and the next attempt. Never a body."""
    rows = await subscriptions.deliveries(session=db, ctx=ctx, subscription_id=str(subscription_id))
    return [_delivery(r) for r in rows]


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/retry",
    operation_id="webhook-subscriptions-deliveries-retry",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retry a delivery",
    responses=responses(202, 401, 403, 404, 422, 503),
)
async def retry_delivery(
    subscription_id: uuid.UUID,
    delivery_id: DeliveryId,
    ctx: CanManageWebhooks,
    db: SessionDep,
    now: ClockDep,
) -> WebhookDeliveryPublic:
    """Queue that event again, now, with a fresh retry schedule (same `webhook-id`)."""
    row = await subscriptions.retry(
        session=db,
        ctx=ctx,
        subscription_id=str(subscription_id),
        delivery_id=delivery_id,
        now=now.now,
    )
    return _delivery(row)
