"""Readiness follows the database and its schema; liveness never touches the database."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from service.core.health import readiness
from service.core.migrate import head_revision
from tests.conftest import make_settings


async def test_ready_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "schema": head_revision()}


async def test_not_ready_on_a_database_without_the_schema(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    report = await readiness(engine)
    await engine.dispose()
    assert (report.ready, report.database) == (False, "not_migrated")


async def test_not_ready_behind_the_latest_migration_but_ready_ahead_of_it(
    database_url: str,
) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    behind = await readiness(engine)
    async with engine.begin() as connection:
        # A revision this release does not ship: a newer release has migrated already.
        await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    ahead = await readiness(engine)
    await engine.dispose()
    assert (behind.ready, behind.database, behind.revision) == (False, "not_migrated", "0001")
    assert (ahead.ready, ahead.revision) == (True, "f00dfeed")


async def test_unreachable_database_fails_readiness_but_not_liveness(signing_key) -> None:
    refused = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    app = create_app(make_settings(refused, signing_key.public_file))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"
    assert int(ready.headers["retry-after"]) > 0
    assert live.status_code == 200
