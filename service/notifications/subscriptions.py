"""Subscriptions' use cases: create, list, delete, rotate the secret, ping, deliveries, retry.

Every one is scoped to the caller's organisation: another organisation's subscription is
indistinguishable from one that does not exist (404). Secrets are returned only by create and
rotate, once. Use cases flush, never commit: the unit of work does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.core.context import RequestContext
from service.core.errors import Conflict, FieldProblem, InvalidContent, NotFound
from service.core.events import (
    REFERRAL_CREATED,
    REFERRAL_SAFEGUARDING_ALERT,
    REFERRAL_STATUS_CHANGED,
)
from service.core.unit_of_work import after_commit
from service.notifications import outbox, repository, signing
from service.notifications.repository import DeliveryRow, SubscriptionRow
from service.notifications.safety import UnsafeUrl, UrlPolicy
from service.notifications.sealing import SecretBox

PING = "ping"
TEAM_EVENTS = frozenset({REFERRAL_CREATED, REFERRAL_SAFEGUARDING_ALERT})
EVENT_TYPES = (REFERRAL_CREATED, REFERRAL_SAFEGUARDING_ALERT, REFERRAL_STATUS_CHANGED, PING)
# Rotation: the old secret keeps signing (a second signature) this long.
PREVIOUS_SECRET_VALID = timedelta(hours=24)
RECENT_DELIVERIES = 50
RESOLVE_TIMEOUT = 5.0  # seconds, for the check of a new subscription's URL


@dataclass(frozen=True, slots=True)
class WithSecret:
    subscription: SubscriptionRow
    secret: str  # shown this once


def _not_found() -> NotFound:
    return NotFound("No such webhook subscription.")


async def _own(db: AsyncConnection, ctx: RequestContext, subscription_id: str) -> SubscriptionRow:
    found = await repository.find_subscription(
        db, org=ctx.caller.org, subscription_id=subscription_id
    )
    if found is None:
        raise _not_found()
    return found


async def create(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    url: str,
    events: Sequence[str],
    description: str | None,
    team: bool,
    policy: UrlPolicy,
    box: SecretBox,
    now: datetime,
    max_per_org: int,
) -> WithSecret:
    """A new subscription of the caller's organisation, with its signing secret. Only the team
    (a token with referrals:triage) may hear of new referrals."""
    problems = []
    wanted = list(events)
    if len(set(wanted)) != len(wanted):
        problems.append(FieldProblem("events", "names an event more than once"))
    if not team and TEAM_EVENTS & set(wanted):
        problems.append(
            FieldProblem(
                "events",
                "referral.created and referral.safeguarding_alert are for the "
                "team (a token with referrals:triage)",
            )
        )
    try:
        # Bounded: a name server that never answers must not hold the request.
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            await policy.resolve(url)
    except UnsafeUrl as exc:
        problems.append(FieldProblem("url", str(exc)))
    except TimeoutError:
        problems.append(FieldProblem("url", "has a host that does not resolve in time"))
    if problems:
        raise InvalidContent(problems)
    db = await session.connection()
    if await repository.count_subscriptions_for_create(db, ctx.caller.org) >= max_per_org:
        raise Conflict(
            f"Your organisation has {max_per_org} webhook subscriptions, the most it may have; "
            "delete one first."
        )
    secret = signing.new_secret()
    subscription_id = str(uuid.uuid4())
    await repository.insert_subscription(
        db,
        {
            "id": subscription_id,
            "org": ctx.caller.org,
            "team": team,
            "url": url,
            "events": repository.events_column(wanted),
            "description": description,
            "secret": box.seal(secret),
            "created_at": now,
            "created_by": ctx.caller.sub,
        },
    )
    return WithSecret(await _own(db, ctx, subscription_id), secret)


async def owned(
    *, session: AsyncSession, ctx: RequestContext, subscription_id: str
) -> SubscriptionRow:
    """The caller's organisation's subscription, or 404."""
    return await _own(await session.connection(), ctx, subscription_id)


async def list_own(*, session: AsyncSession, ctx: RequestContext) -> list[SubscriptionRow]:
    return await repository.list_subscriptions(await session.connection(), ctx.caller.org)


async def delete(*, session: AsyncSession, ctx: RequestContext, subscription_id: str) -> None:
    """Delete the subscription and every delivery still waiting for it."""
    db = await session.connection()
    if not await repository.delete_subscription(
        db, org=ctx.caller.org, subscription_id=subscription_id
    ):
        raise _not_found()


async def rotate_secret(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    subscription_id: str,
    box: SecretBox,
    now: datetime,
) -> WithSecret:
    """A new secret; the old one still signs for 24 hours (both signatures are sent)."""
    db = await session.connection()
    secret = signing.new_secret()
    if not await repository.rotate_secret(
        db,
        org=ctx.caller.org,
        subscription_id=subscription_id,
        secret=box.seal(secret),
        previous_until=now + PREVIOUS_SECRET_VALID,
    ):
        raise _not_found()
    return WithSecret(await _own(db, ctx, subscription_id), secret)


async def ping(
    *, session: AsyncSession, ctx: RequestContext, subscription_id: str, now: datetime
) -> DeliveryRow:
    """Queue a `ping` now (and enable the subscription again if a 410 disabled it)."""
    db = await session.connection()
    await _own(db, ctx, subscription_id)
    await repository.enable_subscription(db, subscription_id)
    await repository.insert_ping(
        db, event_id=outbox.new_event_id(), subscription_id=subscription_id, now=now
    )
    after_commit(session, outbox.nudge)
    return (await repository.recent_deliveries(db, subscription_id, 1))[0]


async def deliveries(
    *, session: AsyncSession, ctx: RequestContext, subscription_id: str
) -> list[DeliveryRow]:
    db = await session.connection()
    await _own(db, ctx, subscription_id)
    return await repository.recent_deliveries(db, subscription_id, RECENT_DELIVERIES)


async def retry(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    subscription_id: str,
    delivery_id: int,
    now: datetime,
) -> DeliveryRow:
    """Queue that event again, now, with a fresh retry schedule."""
    db = await session.connection()
    await _own(db, ctx, subscription_id)
    row = await repository.requeue(
        db, subscription_id=subscription_id, delivery_id=delivery_id, now=now
    )
    if row is None:
        raise NotFound("No such delivery of this webhook subscription.")
    await repository.enable_subscription(db, subscription_id)
    after_commit(session, outbox.nudge)
    return row
