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
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.canonical import as_utc
from service.core.errors import Conflict, FieldProblem, InvalidContent
from service.referrals import repository
from service.referrals.repository import FoundKey, KeyRow


class KeyReused(InvalidContent):
    """The same key came with a different body: the contract makes this a 422."""

    type_slug = "idempotency-key-reused"

    def __init__(self) -> None:
        super().__init__(
            [FieldProblem("Idempotency-Key", "was already used with a different request body")],
            detail="This Idempotency-Key was already used with a different request body.",
        )


def in_flight() -> Conflict:
    return Conflict("A request with this Idempotency-Key is still in progress.")


@dataclass(frozen=True, slots=True)
class Replay:
    """The first request's referral, and its changeable columns as the first response gave them
    (None for keys stored before responses were kept)."""

    referral_id: str
    response: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Claim:
    org: str
    key: str
    request_sha256: str
    replay: Replay | None  # set when this request repeats one already answered

    def row(self, *, referral_id: str, now: datetime, response: dict[str, Any]) -> KeyRow:
        return KeyRow(self.org, self.key, self.request_sha256, referral_id, now, response)


def lock_id(org: str, key: str) -> int:
    digest = hashlib.sha256(f"{org}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def claim(
    db: AsyncConnection, *, org: str, key: str, request_sha256: str, now: datetime, ttl: timedelta
) -> Claim:
    """Decide what a request carrying `key` may do: proceed, replay, or be refused."""
    found: FoundKey | None
    if db.dialect.name == "postgresql":
        # The lock and the lookup in one round trip. The lookup's snapshot can predate a
        # commit that released the lock; intake's key insert (ON CONFLICT) catches that case.
        locked, found = await repository.lock_and_find_key(
            db, org=org, key=key, lock_id=lock_id(org, key)
        )
        if not locked:
            raise in_flight()
    else:
        found = await repository.find_key(db, org=org, key=key)
    if found is not None and as_utc(found.created_at) + ttl < now:
        # Past its retention: the key may be used afresh. Only the very row we saw is removed:
        # if another instance replaced it meanwhile, that request is (or was just) in flight.
        if not await repository.forget_key(db, org=org, key=key, seen=found.created_at):
            raise in_flight()
        found = None
    if found is None:
        return Claim(org, key, request_sha256, None)
    if found.request_sha256 != request_sha256:
        raise KeyReused()
    return Claim(org, key, request_sha256, Replay(found.referral_id, found.response))
