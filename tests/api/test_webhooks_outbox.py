"""The outbox row commits with the change and its audit event, or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from service.core.events import ReferralEvent
from service.core.settings import Settings
from service.models import AUDIT_EVENTS, REFERRALS, WEBHOOK_DELIVERIES
from service.notifications import outbox
from tests.api.lifecycle.helpers import CONFIRM, REFERRER, TEAM, act, submit
from tests.conftest import SigningKey, make_settings
from tests.factories import make_referral_body

HOOKS = {"org": "PIT01", "scopes": ("referrals:triage", "webhooks:manage")}


@pytest.fixture
def settings(database_url: str, signing_key: SigningKey) -> Settings:
    # No dispatcher: the rows stay in the outbox for the test to count.
    return make_settings(
        database_url,
        signing_key.public_file,
        webhook_allow_insecure=True,
        webhook_dispatcher=False,
    )


class InjectedFailure(RuntimeError):
    pass


def fail_after_the_outbox(app: FastAPI, seen: list[int]) -> None:
    """A listener after the outbox's: it sees the outbox rows written, then fails the
    transaction before it commits."""

    async def boom(session: AsyncSession, _events: Sequence[ReferralEvent]) -> None:
        count = select(func.count()).select_from(WEBHOOK_DELIVERIES)
        seen.append(int((await session.execute(count)).scalar_one()))
        raise InjectedFailure

    app.state.services.units.listeners = (outbox.write, boom)


async def count(settings: Settings, table: Any, **where: Any) -> int:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as db:
            query = select(func.count()).select_from(table)
            for name, value in where.items():
                query = query.where(table.c[name] == value)
            return int((await db.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def subscribe(client: httpx.AsyncClient, auth: Any) -> None:
    response = await client.post(
        "/v1/webhook-subscriptions",
        json={
            "url": "http://127.0.0.1:9/hook",
            "events": ["referral.created", "referral.status_changed"],
        },
        headers=auth(**HOOKS),
    )
    assert response.status_code == 201, response.text


async def test_a_failure_after_the_outbox_insert_leaves_neither_referral_nor_event(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, settings: Settings
) -> None:
    await subscribe(client, auth)
    seen: list[int] = []
    fail_after_the_outbox(app, seen)
    response = await client.post(
        "/v1/referrals", json=make_referral_body(), headers=auth(**REFERRER)
    )
    assert response.status_code == 500
    # The outbox row was written in the transaction (on PostgreSQL twice: in its batch, then
    # in the retry of the intake alone) ...
    postgres = settings.database_url.startswith("postgresql")
    assert seen == ([1, 1] if postgres else [1])
    assert await count(settings, WEBHOOK_DELIVERIES) == 0  # ... and rolled back with it
    assert await count(settings, REFERRALS) == 0
    assert await count(settings, AUDIT_EVENTS, action="referral.created") == 0


async def test_a_failure_after_the_outbox_insert_leaves_neither_move_nor_event(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, settings: Settings
) -> None:
    await subscribe(client, auth)
    referral = await submit(client, auth)
    assert await count(settings, WEBHOOK_DELIVERIES) == 1  # referral.created
    seen: list[int] = []
    fail_after_the_outbox(app, seen)
    response = await act(client, auth, referral["id"], "triage", CONFIRM, version=1, who=TEAM)
    assert response.status_code == 500
    assert seen == [2]
    assert await count(settings, WEBHOOK_DELIVERIES) == 1
    assert await count(settings, REFERRALS, status="awaiting_triage") == 1
    assert await count(settings, AUDIT_EVENTS, action="referral.triaged") == 0


async def test_a_committed_move_has_its_event(
    client: httpx.AsyncClient, auth: Any, settings: Settings
) -> None:
    await subscribe(client, auth)
    referral = await submit(client, auth)
    response = await act(client, auth, referral["id"], "triage", CONFIRM, version=1, who=TEAM)
    assert response.status_code == 200
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as db:
            rows = (
                await db.execute(text("SELECT event_type FROM webhook_deliveries ORDER BY id"))
            ).all()
    finally:
        await engine.dispose()
    assert [r[0] for r in rows] == ["referral.created", "referral.status_changed"]
