"""Idempotency-Key handling, per calling organisation, correct across several instances.

On PostgreSQL a transaction-scoped advisory lock on (org, key) marks a request in flight: a
second request with the same key that cannot take the lock gets 409 at once. SQLite runs every
write transaction one at a time (BEGIN IMMEDIATE), so there a second request simply waits and
then replays the first one's response.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.canonical import as_utc
from service.errors import Conflict, FieldProblem, InvalidContent
from service.models import IDEMPOTENCY_KEYS

_KEYS = IDEMPOTENCY_KEYS
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:lock_id)")


class KeyReused(InvalidContent):
    """The same key came with a different body: the contract makes this a 422."""

    type_slug = "idempotency-key-reused"

    def __init__(self) -> None:
        super().__init__(
            [FieldProblem("Idempotency-Key", "was already used with a different request body")],
            detail="This Idempotency-Key was already used with a different request body.",
        )


@dataclass(frozen=True, slots=True)
class Claim:
    org: str
    key: str
    request_sha256: str
    replay_of: str | None  # the referral id to answer with again, when this is a replay


def _lock_id(org: str, key: str) -> int:
    digest = hashlib.sha256(f"{org}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def claim(
    session: AsyncSession, *, org: str, key: str, request_sha256: str, now: datetime, ttl: timedelta
) -> Claim:
    """Decide what a request carrying `key` may do: proceed, replay, or be refused."""
    if session.get_bind().dialect.name == "postgresql":
        locked = (await session.execute(_TRY_LOCK, {"lock_id": _lock_id(org, key)})).scalar()
        if not locked:
            raise Conflict("A request with this Idempotency-Key is still in progress.")
    found = (
        await session.execute(
            select(_KEYS.c.request_sha256, _KEYS.c.referral_id, _KEYS.c.created_at).where(
                _KEYS.c.org == org, _KEYS.c.key == key
            )
        )
    ).first()
    if found is not None and as_utc(found.created_at) + ttl < now:
        # Past its retention: the key may be used afresh.
        await session.execute(delete(_KEYS).where(_KEYS.c.org == org, _KEYS.c.key == key))
        found = None
    if found is None:
        return Claim(org, key, request_sha256, None)
    if found.request_sha256 != request_sha256:
        raise KeyReused()
    return Claim(org, key, request_sha256, str(found.referral_id))


async def record(session: AsyncSession, claim: Claim, *, referral_id: str, now: datetime) -> None:
    """Store the key with the referral it created, in the referral's own transaction."""
    await session.execute(
        insert(_KEYS).values(
            org=claim.org,
            key=claim.key,
            request_sha256=claim.request_sha256,
            referral_id=referral_id,
            created_at=now,
        )
    )
