"""Statements run on the session's asyncpg connection belong to the unit of work's transaction.

This pins the private part of SQLAlchemy 2.0's asyncpg adapter that service/core/pg_raw.py uses
(it begins its transaction lazily, at its own first statement): if an upgrade changes it, these
fail instead of intakes being written outside any transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.core import pg_raw
from service.core.database import create_engine, make_sessionmaker
from service.core.settings import Settings
from service.models import IDEMPOTENCY_KEYS

_INSERT_KEY = pg_raw.Statement.of(
    "INSERT INTO idempotency_keys (org, key, request_sha256, referral_id, created_at, response) "
    "VALUES (:org, :key, :sha, :referral_id, :at, :response)"
)


def test_placeholders_are_numbered_in_order_of_first_use_and_casts_are_left_alone() -> None:
    statement = pg_raw.Statement.of("SELECT :b::integer, :a, :b, 'x::text', :a_b FROM t")
    assert statement.sql == "SELECT $1::integer, $2, $1, 'x::text', $3 FROM t"
    assert statement.names == ("b", "a", "a_b")
    assert statement.args({"a": 1, "b": 2, "a_b": 3, "unused": 4}) == [2, 1, 3]


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, for_requests=True)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


def _key(key: str) -> dict[str, Any]:
    return {
        "org": "RX1",
        "key": key,
        "sha": "a" * 64,
        "referral_id": str(uuid.uuid4()),
        "at": datetime.now(UTC),
        "response": '{"status": "submitted"}',
    }


async def _keys_seen_by_another_connection(engine: AsyncEngine) -> int:
    async with engine.connect() as other:
        count = (await other.execute(select(func.count()).select_from(IDEMPOTENCY_KEYS))).scalar()
    return int(count or 0)


@pytest.mark.postgres_only
async def test_the_first_statement_of_a_unit_of_work_may_be_raw_and_is_in_its_transaction(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        db = await session.connection()
        await pg_raw.fetch(db, _INSERT_KEY, _key("k-1"))
        driver = await pg_raw.driver(db)
        assert isinstance(driver, asyncpg.Connection)
        assert driver.is_in_transaction()
        # Not yet committed: nobody else sees it; SQLAlchemy, on the same transaction, does.
        assert await _keys_seen_by_another_connection(engine) == 0
        seen = await session.execute(select(func.count()).select_from(IDEMPOTENCY_KEYS))
        assert seen.scalar() == 1
        await session.commit()
    assert await _keys_seen_by_another_connection(engine) == 1


@pytest.mark.postgres_only
async def test_a_rollback_takes_back_what_raw_statements_wrote(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        db = await session.connection()
        await pg_raw.fetch(db, _INSERT_KEY, _key("k-1"))
        await session.rollback()
    assert await _keys_seen_by_another_connection(engine) == 0


@pytest.mark.postgres_only
async def test_a_raw_statement_after_sqlalchemy_joins_the_transaction_it_began(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        db = await session.connection()
        await session.execute(select(func.count()).select_from(IDEMPOTENCY_KEYS))
        await pg_raw.fetch(db, _INSERT_KEY, _key("k-1"))
        await session.rollback()
    async with sessions() as session:
        db = await session.connection()
        await pg_raw.fetch(db, _INSERT_KEY, _key("k-2"))
        await session.execute(select(func.count()).select_from(IDEMPOTENCY_KEYS))
        await session.commit()
    async with engine.connect() as other:
        keys = (await other.execute(select(IDEMPOTENCY_KEYS.c.key))).scalars().all()
    assert keys == ["k-2"]


@pytest.mark.postgres_only
async def test_a_failed_raw_statement_leaves_nothing_once_the_unit_of_work_rolls_back(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        db = await session.connection()
        await pg_raw.fetch(db, _INSERT_KEY, _key("k-1"))
        # As SQLAlchemy raises it: the same errors whichever way a statement ran.
        with pytest.raises(IntegrityError):
            await pg_raw.fetch(db, _INSERT_KEY, _key("k-1"))
        await session.rollback()
    assert await _keys_seen_by_another_connection(engine) == 0
    # The pooled connection is usable again, in a new transaction.
    async with sessions() as session:
        await pg_raw.fetch(await session.connection(), _INSERT_KEY, _key("k-1"))
        await session.commit()
    assert await _keys_seen_by_another_connection(engine) == 1


@pytest.mark.postgres_only
async def test_json_values_round_trip_through_the_codec_sqlalchemy_registered(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        db = await session.connection()
        await pg_raw.fetch(db, _INSERT_KEY, _key("k-1"))
        row = await pg_raw.fetchrow(
            db,
            pg_raw.Statement.of("SELECT response, response::text AS text FROM idempotency_keys"),
            {},
        )
        assert row["response"] == {"status": "submitted"}
        assert row["text"] == '{"status": "submitted"}'  # stored as sent, byte for byte
        await session.rollback()


@pytest.mark.postgres_only
async def test_engine_listeners_see_raw_statements_with_their_rows(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The benchmark's E_db replays intake's statements as the engine's listeners saw them."""
    seen: list[tuple[str, tuple[Any, ...], list[str], list[tuple[Any, ...]]]] = []

    def after(_conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        columns = [d[0] for d in cursor.description or ()]
        seen.append((statement, tuple(params), columns, [tuple(r) for r in cursor._rows]))

    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        async with sessions() as session:
            statement = pg_raw.Statement.of("SELECT :n::integer + 1 AS m")
            await pg_raw.fetch(await session.connection(), statement, {"n": 41})
            await session.rollback()
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", after)
    assert seen == [("SELECT $1::integer + 1 AS m", (41,), ["m"], [(42,)])]
