"""PostgreSQL cancels a request's statement that runs past REFERRAL_DB_STATEMENT_TIMEOUT_MS
(a 503 to the client); CLI commands use an engine without that limit."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.app import create_app
from service.core.database import create_engine
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres_only


async def test_a_request_session_reports_the_setting(database_url: str, signing_key) -> None:
    settings = make_settings(database_url, signing_key.public_file, db_statement_timeout_ms=1234)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.services.sessions() as session:
            shown = (await session.execute(text("SHOW statement_timeout"))).scalar_one()
    assert shown == "1234ms"


async def test_the_cli_engine_has_no_statement_timeout(database_url: str, signing_key) -> None:
    settings = make_settings(database_url, signing_key.public_file, db_statement_timeout_ms=1234)
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            shown = (await connection.execute(text("SHOW statement_timeout"))).scalar_one()
    finally:
        await engine.dispose()
    assert shown == "0"


async def test_a_request_query_past_the_timeout_is_a_503(
    database_url: str, signing_key, auth
) -> None:
    settings = make_settings(database_url, signing_key.public_file, db_statement_timeout_ms=200)
    app = create_app(settings)
    url = make_url(database_url).set(drivername="postgresql")
    # Another session holds the referrals table: the request's query waits on the lock until
    # PostgreSQL cancels it (statement_timeout counts the wait), SQLSTATE 57014.
    blocker = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("LOCK TABLE referrals IN ACCESS EXCLUSIVE MODE")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await asyncio.wait_for(
                    client.get("/v1/referrals", headers=auth()), timeout=30
                )
        await holding.rollback()
    finally:
        await blocker.close()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 503
