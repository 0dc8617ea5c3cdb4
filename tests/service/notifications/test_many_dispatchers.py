"""Several dispatchers on one PostgreSQL, as several service instances run them."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from service.core.database import make_sessionmaker
from service.core.unit_of_work import UnitOfWork
from service.notifications import outbox
from tests.service.notifications.conftest import Hooks
from tests.webhooks import receiver

EVENTS = 60


@pytest.mark.postgres_only
async def test_two_dispatchers_deliver_each_event_exactly_once(
    hooks: Hooks, database_url: str
) -> None:
    with receiver(lambda _n: (204, 0.01, {})) as hook:
        await hooks.subscribe(hook.url)
        for n in range(EVENTS):
            await hooks.publish(f"r-{n % 20}", version=2 + n // 20)
        # A second engine: the other instance has its own connections.
        engine = create_async_engine(database_url)
        try:
            other_units = UnitOfWork(make_sessionmaker(engine), listeners=(outbox.write,))
            first = hooks.dispatcher(batch_size=5)
            second = hooks.dispatcher(batch_size=5)
            second.units = other_units

            async def drain(dispatcher: object) -> int:
                sent = 0
                idle = 0
                while idle < 3:  # a few empty claims in a row: the other holds the rest
                    got = await dispatcher.run_once()  # type: ignore[attr-defined]
                    sent += got
                    idle = 0 if got else idle + 1
                    await asyncio.sleep(0.01)
                return sent

            counts = await asyncio.gather(drain(first), drain(second))
        finally:
            await engine.dispose()
        ids = Counter(r.headers["webhook-id"] for r in hook.snapshot())
        assert len(ids) == EVENTS
        assert set(ids.values()) == {1}
        assert sum(counts) == EVENTS
        assert all(counts), counts  # both took part
        rows = await hooks.deliveries()
        assert {r.status for r in rows} == {"succeeded"}
        # Each referral's events arrived in order, whichever dispatcher sent them.
        versions: dict[str, list[int]] = {}
        for r in hook.snapshot():
            data = r.json()["data"]
            versions.setdefault(data["id"], []).append(data["version"])
        assert all(v == sorted(v) for v in versions.values())
