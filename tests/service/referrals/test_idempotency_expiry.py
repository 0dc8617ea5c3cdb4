"""An expired Idempotency-Key may be reused; one replaced meanwhile by another instance may not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from service.core.errors import Conflict
from service.models import IDEMPOTENCY_KEYS
from service.referrals import idempotency

TTL = timedelta(hours=48)
SHA = "a" * 64


class _StaleFirstRead:
    """A connection whose first read (the key lookup) returns what an older snapshot showed."""

    def __init__(self, connection: Any, stale_row: SimpleNamespace) -> None:
        self._connection = connection
        self._stale_row: SimpleNamespace | None = stale_row
        self.dialect = connection.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if self._stale_row is not None:
            row, self._stale_row = self._stale_row, None
            return SimpleNamespace(one=lambda: row, first=lambda: row)
        return await self._connection.execute(statement, parameters)


async def _store_key(database_url: str, created_at: datetime) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(
            insert(IDEMPOTENCY_KEYS).values(
                org="RX1",
                key="k-1",
                request_sha256=SHA,
                referral_id=str(uuid.uuid4()),
                created_at=created_at,
            )
        )
    await engine.dispose()


async def _keys(connection: Any) -> int:
    return int(
        (await connection.execute(select(func.count()).select_from(IDEMPOTENCY_KEYS))).scalar()
    )


async def test_an_expired_key_is_forgotten_and_may_be_used_afresh(database_url: str) -> None:
    now = datetime.now(UTC)
    await _store_key(database_url, now - TTL - timedelta(minutes=1))
    engine = create_async_engine(database_url)
    async with engine.connect() as connection:
        claim = await idempotency.claim(
            connection, org="RX1", key="k-1", request_sha256="b" * 64, now=now, ttl=TTL
        )
        assert claim.replay is None
        assert await _keys(connection) == 0
        await connection.rollback()
    await engine.dispose()


async def test_an_expired_key_replaced_by_another_instance_is_not_deleted(
    database_url: str,
) -> None:
    now = datetime.now(UTC)
    await _store_key(database_url, now)  # the other instance's fresh record
    stale = SimpleNamespace(
        locked=True,
        request_sha256=SHA,
        referral_id="old",
        created_at=now - TTL * 2,
        response=None,
    )
    engine = create_async_engine(database_url)
    async with engine.connect() as connection:
        with pytest.raises(Conflict):
            await idempotency.claim(
                _StaleFirstRead(connection, stale),  # type: ignore[arg-type]
                org="RX1",
                key="k-1",
                request_sha256=SHA,
                now=now,
                ttl=TTL,
            )
        assert await _keys(connection) == 1
        await connection.rollback()
    await engine.dispose()
