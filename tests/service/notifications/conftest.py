"""Fixtures for the dispatcher tests: a unit of work with the outbox listener, subscriptions,
events published as referrals publish them, and a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.core import events
from service.core.context import Caller, RequestContext
from service.core.database import make_sessionmaker
from service.core.unit_of_work import UnitOfWork
from service.models import WEBHOOK_DELIVERIES, WEBHOOK_SUBSCRIPTIONS
from service.notifications import outbox, subscriptions
from service.notifications.dispatcher import Dispatcher
from service.notifications.safety import UrlPolicy
from service.notifications.sealing import SecretBox
from tests.webhooks import local_resolver

TEAM = RequestContext(Caller("team", "PIT01", frozenset()), request_id="req-team")
LOCAL = UrlPolicy(allow_insecure=True, resolver=local_resolver)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWork:
    return UnitOfWork(make_sessionmaker(engine), listeners=(outbox.write,))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Hooks:
    units: UnitOfWork
    clock: Clock
    dispatchers: list[Dispatcher] = field(default_factory=list)
    box: SecretBox = field(default_factory=lambda: SecretBox(()))

    async def subscribe(
        self, url: str, types: tuple[str, ...] = ("referral.status_changed",)
    ) -> subscriptions.WithSecret:
        async with self.units.begin() as session:
            return await subscriptions.create(
                session=session,
                ctx=TEAM,
                url=url,
                events=types,
                description=None,
                team=True,
                policy=LOCAL,
                box=self.box,
                now=self.clock(),
                max_per_org=100,
            )

    async def publish(self, referral_id: str, version: int = 2, **data: Any) -> None:
        event = events.ReferralEvent(
            events.REFERRAL_STATUS_CHANGED,
            referral_id,
            "RX1",
            True,
            False,
            self.clock(),
            {"id": referral_id, "version": version, **data},
        )
        async with self.units.begin() as session:
            await events.publish(session, [event])

    def dispatcher(self, **options: Any) -> Dispatcher:
        values: dict[str, Any] = {
            "policy": LOCAL,
            "clock": self.clock,
            "jitter": lambda: 1.0,
            "timeout": 5.0,
            "box": self.box,
        }
        values.update(options)
        made = Dispatcher(self.units, **values)
        self.dispatchers.append(made)
        return made

    async def deliveries(self) -> list[Any]:
        async with self.units.begin() as session:
            rows = await session.execute(select(WEBHOOK_DELIVERIES).order_by("id"))
            return list(rows)

    async def subscription(self, subscription_id: str) -> Any:
        async with self.units.begin() as session:
            query = select(WEBHOOK_SUBSCRIPTIONS).where(
                WEBHOOK_SUBSCRIPTIONS.c.id == subscription_id
            )
            return (await session.execute(query)).one()


@pytest.fixture
async def hooks(units: UnitOfWork, clock: Clock) -> AsyncIterator[Hooks]:
    made = Hooks(units, clock)
    yield made
    for dispatcher in made.dispatchers:
        await dispatcher.aclose()


HooksFactory = Callable[..., Hooks]
