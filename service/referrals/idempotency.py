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

from sqlalchemy import Row, bindparam, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.canonical import as_utc
from service.core.errors import Conflict, FieldProblem, InvalidContent
from service.models import IDEMPOTENCY_KEYS

_KEYS = IDEMPOTENCY_KEYS
_PG_LOCK_AND_FIND = text(
    "SELECT pg_try_advisory_xact_lock(:lock_id) AS locked, k.request_sha256, k.referral_id, "
    "k.created_at FROM (SELECT 1) AS one LEFT JOIN idempotency_keys AS k "
    "ON k.org = :org AND k.key = :key"
)
_THIS_KEY = (_KEYS.c.org == bindparam("org")) & (_KEYS.c.key == bindparam("key"))
_FIND_KEY = select(_KEYS.c.request_sha256, _KEYS.c.referral_id, _KEYS.c.created_at).where(_THIS_KEY)
_FORGET_KEY = delete(_KEYS).where(_THIS_KEY, _KEYS.c.created_at == bindparam("seen"))
_INSERT_KEY = insert(_KEYS)


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
    db: AsyncConnection, *, org: str, key: str, request_sha256: str, now: datetime, ttl: timedelta
) -> Claim:
    """Decide what a request carrying `key` may do: proceed, replay, or be refused."""
    key_params = {"org": org, "key": key}
    found: Row[Any] | None
    if db.dialect.name == "postgresql":
        # The lock and the lookup in one round trip. The lookup's snapshot can predate a
        # commit that released the lock; intake's key insert (ON CONFLICT) catches that case.
        looked = (
            await db.execute(_PG_LOCK_AND_FIND, {**key_params, "lock_id": _lock_id(org, key)})
        ).one()
        if not looked.locked:
            raise Conflict("A request with this Idempotency-Key is still in progress.")
        found = None if looked.request_sha256 is None else looked
    else:
        found = (await db.execute(_FIND_KEY, key_params)).first()
    if found is not None and as_utc(found.created_at) + ttl < now:
        # Past its retention: the key may be used afresh. Only the very row we saw is removed:
        # if another instance replaced it meanwhile, that request is (or was just) in flight.
        forgotten = await db.execute(_FORGET_KEY, {**key_params, "seen": found.created_at})
        if forgotten.rowcount != 1:
            raise Conflict("A request with this Idempotency-Key is still in progress.")
        found = None
    if found is None:
        return Claim(org, key, request_sha256, None)
    if found.request_sha256 != request_sha256:
        raise KeyReused()
    return Claim(org, key, request_sha256, str(found.referral_id))


async def record(db: AsyncConnection, claim: Claim, *, referral_id: str, now: datetime) -> None:
    """Store the key with the referral it created, in the referral's own transaction."""
    await db.execute(
        _INSERT_KEY,
        {
            "org": claim.org,
            "key": claim.key,
            "request_sha256": claim.request_sha256,
            "referral_id": referral_id,
            "created_at": now,
        },
    )
