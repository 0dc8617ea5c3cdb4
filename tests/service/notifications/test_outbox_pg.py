"""PostgreSQL's outbox INSERT (asyncpg) against the portable SQLAlchemy Core one that SQLite runs,
both on PostgreSQL: the same events fan out to the same subscriptions as the very same rows (the
JSON compared as stored text), in the same order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core import events
from service.core.database import create_engine
from service.core.settings import Settings
from service.models import WEBHOOK_SUBSCRIPTIONS
from service.notifications import repository

pytestmark = pytest.mark.postgres_only

NOW = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
ALL = "referral.created referral.safeguarding_alert referral.status_changed ping".split()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, for_requests=True)
    yield engine
    await engine.dispose()


def _subscription(
    sid: str, org: str, *, team: bool, types: list[str], disabled: bool = False
) -> dict[str, Any]:
    return {
        "id": sid,
        "org": org,
        "team": team,
        "url": f"https://hooks.example/{sid}",
        "events": repository.events_column(types),
        "description": None,
        "secret": "whsec_x",
        "created_at": NOW - timedelta(days=1),
        "created_by": "admin",
        "disabled_at": NOW - timedelta(hours=1) if disabled else None,
        "disabled_reason": "gone" if disabled else None,
    }


def _events(tag: str) -> list[tuple[str, events.ReferralEvent]]:
    referral = "r-1"
    return [
        (
            f"msg_{tag}_1",
            events.ReferralEvent(
                events.REFERRAL_CREATED, referral, "RX1", False, False, NOW, {"id": referral}
            ),
        ),
        (
            f"msg_{tag}_2",
            events.ReferralEvent(
                events.REFERRAL_SAFEGUARDING_ALERT,
                referral,
                "RX1",
                False,
                True,
                NOW,
                {"id": referral, "safeguarding_alert": True, "note": "é ✓"},
            ),
        ),
        (
            f"msg_{tag}_3",
            events.ReferralEvent(
                events.REFERRAL_STATUS_CHANGED,
                referral,
                "RX1",
                True,
                False,
                NOW + timedelta(seconds=1),
                {"id": referral, "status": "accepted", "version": 2, "none": None},
            ),
        ),
    ]


async def _written(engine: AsyncEngine, tag: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT event_type, subscription_id, referral_id, data::text AS data, rank, "
                "created_at, status, attempts, next_attempt_at, last_error, finished_at "
                "FROM webhook_deliveries WHERE event_id LIKE :tagged ORDER BY id"
            ),
            {"tagged": f"msg_{tag}_%"},
        )
        return [dict(r._mapping) for r in rows]


async def test_both_statements_write_the_same_deliveries(engine: AsyncEngine) -> None:
    subscriptions = [
        _subscription("team-all", "PIT01", team=True, types=ALL),
        _subscription("team-off", "PIT01", team=True, types=ALL, disabled=True),
        _subscription("team-ping", "PIT01", team=True, types=["ping"]),
        _subscription("rx1", "RX1", team=False, types=["referral.status_changed"]),
        _subscription("other", "A81001", team=False, types=["referral.status_changed"]),
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(WEBHOOK_SUBSCRIPTIONS), subscriptions)
    async with engine.begin() as conn:
        raw = await repository.insert_events_postgres(conn, _events("raw"))
        core = await repository.insert_events_core(conn, _events("core"))
    by_raw, by_core = await _written(engine, "raw"), await _written(engine, "core")
    assert raw == core == len(by_raw) == 7
    assert by_raw == by_core
    # Created and the alert reach the team only; the status change the referrer too; the
    # disabled subscription's rows are failed at once; nothing for another organisation or
    # for a subscription that does not want the type.
    assert sorted((r["event_type"], r["subscription_id"], r["status"]) for r in by_raw) == [
        ("referral.created", "team-all", "pending"),
        ("referral.created", "team-off", "failed"),
        ("referral.safeguarding_alert", "team-all", "pending"),
        ("referral.safeguarding_alert", "team-off", "failed"),
        ("referral.status_changed", "rx1", "pending"),
        ("referral.status_changed", "team-all", "pending"),
        ("referral.status_changed", "team-off", "failed"),
    ]
    # Each event's rows in the order given (each referral's order of delivery), the alert
    # ranked first.
    assert [r["event_type"] for r in by_raw] == ["referral.created"] * 2 + [
        "referral.safeguarding_alert"
    ] * 2 + ["referral.status_changed"] * 3
    assert {r["rank"] for r in by_raw if r["event_type"] == "referral.safeguarding_alert"} == {0}


async def test_nothing_is_written_when_nothing_wants_the_event(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await repository.insert_events_postgres(conn, _events("none")) == 0
    assert await _written(engine, "none") == []
