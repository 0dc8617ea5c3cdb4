"""Downgrading below 0007 is refused while an audit event carries a correlation id (its hash
covers it), and leaves the database exactly as it was; without one it goes down and back up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.audit import chain
from service.core.context import Caller, RequestContext
from service.core.database import create_engine
from service.core.migrate import downgrade, head_revision, upgrade
from tests.conftest import SigningKey, make_settings

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
async def engine(
    database_url: str, postgres_databases: Any, tmp_path: Path, signing_key: SigningKey
) -> AsyncIterator[AsyncEngine]:
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'downgrade.db'}"
    else:
        url = await postgres_databases.new_empty()
    # The service's own engine, as `referral-service migrate` uses it (on SQLite it begins
    # every transaction itself, so the DDL of a whole migration run is one transaction).
    engine = create_engine(make_settings(url, signing_key.public_file))
    await upgrade(engine)
    yield engine
    await engine.dispose()
    if not database_url.startswith("sqlite"):
        await postgres_databases.drop(url)


async def _append(engine: AsyncEngine, correlation_id: str | None) -> None:
    ctx = RequestContext(Caller("nurse-1", "RX1", frozenset()), "req-1", correlation_id)
    async with engine.begin() as conn:
        await chain.append(
            conn,
            ctx,
            action="referral.read",
            resource_type="referral",
            resource_id="r-1",
            outcome="success",
            now=NOW,
        )


async def _revision(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str(
            (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
        )


async def _columns(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: {c["name"] for c in sa.inspect(sync).get_columns(table)}
        )


async def test_a_correlated_event_refuses_the_downgrade_and_nothing_changes(
    engine: AsyncEngine,
) -> None:
    await _append(engine, None)
    await _append(engine, "partner-abc-123")
    with pytest.raises(RuntimeError, match="1 audit events carry a correlation id"):
        await downgrade(engine, "0006")
    # 0007 is intact. PostgreSQL runs the whole downgrade as one transaction, so 0008's tables,
    # dropped before 0007 refused, are back too; alembic commits each SQLite migration on its own.
    assert "correlation_id" in await _columns(engine, "audit_events")
    if engine.dialect.name == "postgresql":
        assert await _revision(engine) == head_revision()
        assert "url" in await _columns(engine, "webhook_subscriptions")
    else:
        assert await _revision(engine) == "0007"
    await upgrade(engine)
    assert await _revision(engine) == head_revision()


async def test_without_one_it_goes_down_and_back_up(engine: AsyncEngine) -> None:
    await _append(engine, None)
    await downgrade(engine, "0006")
    assert await _revision(engine) == "0006"
    assert "correlation_id" not in await _columns(engine, "audit_events")
    await upgrade(engine)
    assert await _revision(engine) == head_revision()
