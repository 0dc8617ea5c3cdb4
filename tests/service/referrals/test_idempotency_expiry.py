"""An expired Idempotency-Key may be reused; one replaced meanwhile by another instance may not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from service.core.errors import Conflict
from service.models import IDEMPOTENCY_KEYS
from service.referrals import idempotency, repository
from service.referrals.repository import FoundKey

TTL = timedelta(hours=48)
SHA = "a" * 64


def _stale_first_lookup(monkeypatch: pytest.MonkeyPatch, stale: FoundKey) -> None:
    """The first key lookup returns what an older snapshot showed (on either backend)."""
    first = [stale]

    async def lock_and_find_key(*_: Any, **__: Any) -> tuple[bool, FoundKey | None]:
        return True, first.pop()

    async def find_key(*_: Any, **__: Any) -> FoundKey | None:
        return first.pop()

    monkeypatch.setattr(repository, "lock_and_find_key", lock_and_find_key)
    monkeypatch.setattr(repository, "find_key", find_key)


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
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    await _store_key(database_url, now)  # the other instance's fresh record
    _stale_first_lookup(monkeypatch, FoundKey(SHA, "old", now - TTL * 2, None))
    engine = create_async_engine(database_url)
    async with engine.connect() as connection:
        with pytest.raises(Conflict):
            await idempotency.claim(
                connection,
                org="RX1",
                key="k-1",
                request_sha256=SHA,
                now=now,
                ttl=TTL,
            )
        assert await _keys(connection) == 1
        await connection.rollback()
    await engine.dispose()
