"""Every SQL statement of the notifications domain: subscriptions and the outbox of deliveries.

The outbox is fanned out when it is written: one row per event and matching subscription, by
one INSERT … SELECT in the transaction of the change (nothing is written when nothing
matches); on PostgreSQL that INSERT runs on asyncpg in the session's transaction, like intake's
other statements (service/core/pg_raw.py). Dispatchers claim due rows with FOR UPDATE SKIP
LOCKED on PostgreSQL and a lease, and a row waits while an earlier row of the same referral for
the same subscription is pending or being delivered; a row that has failed for good no longer
holds later ones back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core import pg_raw
from service.core.canonical import as_utc
from service.core.events import ReferralEvent
from service.models import WEBHOOK_DELIVERIES, WEBHOOK_SUBSCRIPTIONS

_S = WEBHOOK_SUBSCRIPTIONS
_D = WEBHOOK_DELIVERIES

PENDING = "pending"
DELIVERING = "delivering"
SUCCEEDED = "succeeded"
FAILED = "failed"
_WAITING = (PENDING, DELIVERING)
_AT = DateTime(timezone=True)
_FANOUT_COLUMNS = (
    "event_id",
    "event_type",
    "subscription_id",
    "referral_id",
    "data",
    "rank",
    "created_at",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "finished_at",
)

# --- Writing events ------------------------------------------------------------------------


def events_column(types: Sequence[str]) -> str:
    """How a subscription's event types are stored: space-delimited, a space at each end."""
    return f" {' '.join(types)} "


def event_types(stored: str) -> list[str]:
    return stored.split()


def _fanout(n: int, *, to_referrer: bool) -> Any:
    """The subscriptions that want event `n` of a statement, as delivery rows (values bound
    at execution under names suffixed with `n`)."""
    s = _S.c
    routed = s.team == true()
    if to_referrer:
        routed = or_(routed, s.org == bindparam(f"org_{n}", type_=String()))
    at = bindparam(f"at_{n}", type_=_AT)
    # A disabled subscription (410) is sent nothing, but what it missed is written as failed:
    # visible in its deliveries and counted, and retryable (a safeguarding alert above all).
    enabled = s.disabled_at.is_(None)
    return select(
        bindparam(f"event_id_{n}", type_=String()),
        bindparam(f"event_type_{n}", type_=String()),
        s.id,
        bindparam(f"referral_id_{n}", type_=String()),
        bindparam(f"data_{n}", type_=JSON()),
        bindparam(f"rank_{n}", type_=Integer()),
        at,
        case((enabled, literal(PENDING, String())), else_=literal(FAILED, String())),
        literal(0, Integer()),
        at,
        case((enabled, null()), else_=literal("subscription_disabled", String())),
        case((enabled, null()), else_=at),
    ).where(s.events.like(bindparam(f"pattern_{n}", type_=String())), routed)


@lru_cache(maxsize=64)
def _insert_events_statement(to_referrer: tuple[bool, ...]) -> Any:
    """The fan-out INSERT for one shape of event list, built once: building a select per
    event per request cost about a tenth of an intake's CPU, and the values are bound anyway."""
    selects = [_fanout(n, to_referrer=flag) for n, flag in enumerate(to_referrer)]
    source = selects[0] if len(selects) == 1 else union_all(*selects)
    return insert(_D).from_select(list(_FANOUT_COLUMNS), source)


@lru_cache(maxsize=64)
def _pg_insert_events_statement(to_referrer: tuple[bool, ...]) -> pg_raw.Statement:
    """The same fan-out as `_insert_events_statement`, as text for asyncpg (PostgreSQL: the
    outbox row is written on every intake and move, beside statements already on asyncpg).
    Values are cast: PostgreSQL infers nothing from a column through a SELECT."""
    selects = []
    for n, flag in enumerate(to_referrer):
        at = f":at_{n}::timestamptz"
        routed = f"s.team OR s.org = :org_{n}::varchar" if flag else "s.team"
        selects.append(
            f"SELECT :event_id_{n}::varchar, :event_type_{n}::varchar, s.id, "
            f":referral_id_{n}::varchar, :data_{n}::json, :rank_{n}::integer, {at}, "
            f"CASE WHEN s.disabled_at IS NULL THEN '{PENDING}' ELSE '{FAILED}' END, 0, {at}, "
            "CASE WHEN s.disabled_at IS NULL THEN NULL ELSE 'subscription_disabled' END, "
            f"CASE WHEN s.disabled_at IS NULL THEN NULL ELSE {at} END "
            "FROM webhook_subscriptions AS s "
            f"WHERE s.events LIKE :pattern_{n}::varchar AND ({routed})"
        )
    return pg_raw.Statement.of(
        f"INSERT INTO webhook_deliveries ({', '.join(_FANOUT_COLUMNS)}) "
        + " UNION ALL ".join(selects)
        + " RETURNING 1"
    )


def _fanout_values(
    n: int, event_id: str, event: ReferralEvent, *, json_text: bool = False
) -> dict[str, Any]:
    values = {
        f"event_id_{n}": event_id,
        f"event_type_{n}": event.type,
        f"referral_id_{n}": event.referral_id,
        # asyncpg takes JSON as text: what SQLAlchemy's JSON type would have sent.
        f"data_{n}": json.dumps(event.data) if json_text else event.data,
        f"rank_{n}": 0 if event.urgent else 1,
        f"at_{n}": event.at,
        f"pattern_{n}": f"% {event.type} %",
    }
    if event.to_referrer:
        values[f"org_{n}"] = event.org
    return values


async def insert_events(db: AsyncConnection, events: Sequence[tuple[str, ReferralEvent]]) -> int:
    """Fan `events` (with their ids) out to the subscriptions that want them, in one statement.
    Rows are inserted in the order given, which is each referral's order of delivery."""
    if db.dialect.name == "postgresql":
        return await insert_events_postgres(db, events)
    return await insert_events_core(db, events)


async def insert_events_postgres(
    db: AsyncConnection, events: Sequence[tuple[str, ReferralEvent]]
) -> int:
    """`insert_events` on asyncpg (PostgreSQL); how many deliveries it wrote."""
    statement = _pg_insert_events_statement(tuple(event.to_referrer for _, event in events))
    values: dict[str, Any] = {}
    for n, (event_id, event) in enumerate(events):
        values.update(_fanout_values(n, event_id, event, json_text=True))
    return len(await pg_raw.fetch(db, statement, values))


async def insert_events_core(
    db: AsyncConnection, events: Sequence[tuple[str, ReferralEvent]]
) -> int:
    """`insert_events` with SQLAlchemy Core: SQLite's way (and, in the tests, the reference
    that PostgreSQL's statement is compared with)."""
    statement = _insert_events_statement(tuple(event.to_referrer for _, event in events))
    values: dict[str, Any] = {}
    for n, (event_id, event) in enumerate(events):
        values.update(_fanout_values(n, event_id, event))
    result = await db.execute(statement, values)
    return int(result.rowcount or 0)


async def insert_ping(
    db: AsyncConnection, *, event_id: str, subscription_id: str, now: datetime
) -> int:
    result = await db.execute(
        insert(_D)
        .values(
            event_id=event_id,
            event_type="ping",
            subscription_id=subscription_id,
            referral_id=None,
            data={"subscription_id": subscription_id},
            rank=1,
            created_at=now,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
        )
        .returning(_D.c.id)
    )
    return int(result.scalar_one())


# --- Subscriptions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: str
    org: str
    team: bool
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


def _subscription(row: Any) -> SubscriptionRow:
    return SubscriptionRow(
        id=row.id,
        org=row.org,
        team=bool(row.team),
        url=row.url,
        events=event_types(row.events),
        description=row.description,
        created_at=as_utc(row.created_at),
        disabled_at=as_utc(row.disabled_at) if row.disabled_at else None,
        disabled_reason=row.disabled_reason,
    )


_PUBLIC_COLUMNS = (
    _S.c.id,
    _S.c.org,
    _S.c.team,
    _S.c.url,
    _S.c.events,
    _S.c.description,
    _S.c.created_at,
    _S.c.disabled_at,
    _S.c.disabled_reason,
)


async def insert_subscription(db: AsyncConnection, values: dict[str, Any]) -> None:
    await db.execute(insert(_S).values(**values))


# Serialises one organisation's subscription creates until commit (PostgreSQL; SQLite's
# writers are serialised already): counting and inserting are two statements, and without it
# simultaneous creates all saw room and all inserted. The two-key form of the advisory lock is
# a key space of its own, apart from the idempotency keys' one-key locks.
_PG_LOCK_ORG_SUBSCRIPTIONS = text("SELECT pg_advisory_xact_lock(8413, hashtext(:org))")


async def count_subscriptions_for_create(db: AsyncConnection, org: str) -> int:
    """How many subscriptions `org` has, locked against another create until commit."""
    if db.dialect.name == "postgresql":
        await db.execute(_PG_LOCK_ORG_SUBSCRIPTIONS, {"org": org})
    query = select(func.count()).select_from(_S).where(_S.c.org == org)
    return int((await db.execute(query)).scalar_one())


async def list_subscriptions(db: AsyncConnection, org: str) -> list[SubscriptionRow]:
    query = select(*_PUBLIC_COLUMNS).where(_S.c.org == org).order_by(_S.c.created_at, _S.c.id)
    return [_subscription(r) for r in await db.execute(query)]


async def find_subscription(
    db: AsyncConnection, *, org: str, subscription_id: str
) -> SubscriptionRow | None:
    """The subscription if it is `org`'s: another organisation's is the same as none."""
    query = select(*_PUBLIC_COLUMNS).where(_S.c.id == subscription_id, _S.c.org == org)
    row = (await db.execute(query)).first()
    return None if row is None else _subscription(row)


async def delete_subscription(db: AsyncConnection, *, org: str, subscription_id: str) -> bool:
    gone = await db.execute(delete(_S).where(_S.c.id == subscription_id, _S.c.org == org))
    if gone.rowcount != 1:
        return False
    await db.execute(delete(_D).where(_D.c.subscription_id == subscription_id))
    return True


async def rotate_secret(
    db: AsyncConnection,
    *,
    org: str,
    subscription_id: str,
    secret: str,
    previous_until: datetime,
) -> bool:
    result = await db.execute(
        update(_S)
        .where(_S.c.id == subscription_id, _S.c.org == org)
        .values(
            previous_secret=_S.c.secret,
            previous_secret_expires_at=previous_until,
            secret=secret,
        )
    )
    return result.rowcount == 1


async def disable_subscription(
    db: AsyncConnection, *, subscription_id: str, reason: str, now: datetime
) -> None:
    """Disable it and give up on everything still waiting for it (kept, visible, retryable)."""
    await db.execute(
        update(_S)
        .where(_S.c.id == subscription_id, _S.c.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason)
    )
    await db.execute(
        update(_D)
        .where(_D.c.subscription_id == subscription_id, _D.c.status == PENDING)
        .values(status=FAILED, last_error="subscription_disabled", finished_at=now)
    )


async def lock_disabled(db: AsyncConnection, subscription_id: str) -> bool:
    """Whether the subscription is disabled, holding its row until the commit: a concurrent
    disable either commits first (and is seen) or waits, then fails what this leaves pending."""
    query = select(_S.c.disabled_at).where(_S.c.id == subscription_id).with_for_update()
    row = (await db.execute(query)).first()
    return row is not None and row.disabled_at is not None


# --- Deliveries log ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    event_id: str
    event_type: str
    subscription_id: str
    referral_id: str | None
    data: dict[str, Any]
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None


def _delivery(row: Any) -> DeliveryRow:
    waiting = row.status in _WAITING
    return DeliveryRow(
        id=int(row.id),
        event_id=row.event_id,
        event_type=row.event_type,
        subscription_id=row.subscription_id,
        referral_id=row.referral_id,
        data=row.data,
        created_at=as_utc(row.created_at),
        status=row.status,
        attempts=int(row.attempts),
        next_attempt_at=as_utc(row.next_attempt_at) if waiting else None,
        last_attempt_at=as_utc(row.last_attempt_at) if row.last_attempt_at else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
    )


async def recent_deliveries(
    db: AsyncConnection, subscription_id: str, limit: int
) -> list[DeliveryRow]:
    query = (
        select(_D)
        .where(_D.c.subscription_id == subscription_id)
        .order_by(_D.c.id.desc())
        .limit(limit)
    )
    return [_delivery(r) for r in await db.execute(query)]


async def requeue(
    db: AsyncConnection, *, subscription_id: str, delivery_id: int, now: datetime
) -> DeliveryRow | None:
    """Queue a delivery again with a fresh retry schedule (a delivery still waiting is left
    as it is). None when the subscription has no such delivery."""
    d = _D.c
    await db.execute(
        update(_D)
        .where(
            d.id == delivery_id,
            d.subscription_id == subscription_id,
            d.status.in_((SUCCEEDED, FAILED)),
        )
        .values(status=PENDING, attempts=0, next_attempt_at=now, finished_at=None)
    )
    query = select(_D).where(d.id == delivery_id, d.subscription_id == subscription_id)
    row = (await db.execute(query)).first()
    return None if row is None else _delivery(row)


async def enable_subscription(db: AsyncConnection, subscription_id: str) -> None:
    """A manual retry or ping is the organisation saying its endpoint works again."""
    await db.execute(
        update(_S).where(_S.c.id == subscription_id).values(disabled_at=None, disabled_reason=None)
    )


# --- Dispatching ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a dispatcher holds the lease of, with what it needs to send it."""

    id: int
    event_id: str
    event_type: str
    subscription_id: str
    data: dict[str, Any]
    created_at: datetime
    attempt: int  # 1 for the first
    url: str
    secrets: tuple[str, ...]  # the current secret first; the previous one while it is valid


def _due(now: datetime) -> Any:
    d = _D.c
    earlier = _D.alias("earlier")
    waits_for_earlier = exists().where(
        earlier.c.subscription_id == d.subscription_id,
        earlier.c.referral_id == d.referral_id,
        earlier.c.id < d.id,
        earlier.c.status.in_(_WAITING),
    )
    return and_(
        or_(
            and_(d.status == PENDING, d.next_attempt_at <= now),
            # A dispatcher that died mid-delivery: its lease has run out.
            and_(d.status == DELIVERING, d.lease_expires_at <= now),
        ),
        ~waits_for_earlier,
    )


async def claim(
    db: AsyncConnection, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Take the lease of up to `limit` due deliveries: safeguarding alerts first, then the
    longest waiting. Concurrent dispatchers on PostgreSQL skip each other's rows."""
    d = _D.c
    due = (
        select(d.id)
        .join(_S, _S.c.id == d.subscription_id)
        .where(_due(now), _S.c.disabled_at.is_(None))
        .order_by(d.rank, d.next_attempt_at, d.id)
        .limit(limit)
    )
    if db.dialect.name == "postgresql":
        due = due.with_for_update(of=_D, skip_locked=True)
    ids = list((await db.execute(due)).scalars())
    if not ids:
        return []
    # Re-checked in the UPDATE: on SQLite (one dispatcher) nothing else skips locked rows.
    taken = await db.execute(
        update(_D)
        .where(
            d.id.in_(ids),
            or_(d.status == PENDING, and_(d.status == DELIVERING, d.lease_expires_at <= now)),
        )
        .values(
            status=DELIVERING,
            lease_owner=owner,
            lease_expires_at=now + lease,
            attempts=d.attempts + 1,
        )
        .returning(d.id)
    )
    claimed_ids = list(taken.scalars())
    if not claimed_ids:
        return []
    rows = await db.execute(
        select(
            _D,
            _S.c.url,
            _S.c.secret,
            _S.c.previous_secret,
            _S.c.previous_secret_expires_at,
        )
        .join(_S, _S.c.id == d.subscription_id)
        .where(d.id.in_(claimed_ids))
        .order_by(d.rank, d.id)
    )
    claimed = []
    for r in rows:
        secrets: tuple[str, ...] = (r.secret,)
        expires = r.previous_secret_expires_at
        if r.previous_secret and expires is not None and as_utc(expires) > now:
            secrets = (r.secret, r.previous_secret)
        claimed.append(
            Claimed(
                id=int(r.id),
                event_id=r.event_id,
                event_type=r.event_type,
                subscription_id=r.subscription_id,
                data=r.data,
                created_at=as_utc(r.created_at),
                attempt=int(r.attempts),
                url=r.url,
                secrets=secrets,
            )
        )
    return claimed


async def record(
    db: AsyncConnection,
    *,
    delivery_id: int,
    owner: str,
    now: datetime,
    status: str,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
) -> bool:
    """Record an attempt's result, if this dispatcher still holds the lease (False if not:
    it ran out and another dispatcher has the delivery now)."""
    d = _D.c
    values: dict[str, Any] = {
        "status": status,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_attempt_at": now,
        "last_status_code": status_code,
        "last_error": error,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if status in (SUCCEEDED, FAILED):
        values["finished_at"] = now
    result = await db.execute(
        update(_D)
        .where(d.id == delivery_id, d.lease_owner == owner, d.status == DELIVERING)
        .values(**values)
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Backlog:
    depth: int  # deliveries still to make (pending or being delivered)
    oldest: datetime | None  # when the longest-waiting of them was written
    failed: dict[str, int]  # deliveries given up on (kept until the retention), by event type


async def backlog(db: AsyncConnection) -> Backlog:
    row = (
        await db.execute(
            select(func.count(), func.min(_D.c.created_at)).where(_D.c.status.in_(_WAITING))
        )
    ).one()
    failed = await db.execute(
        select(_D.c.event_type, func.count()).where(_D.c.status == FAILED).group_by(_D.c.event_type)
    )
    return Backlog(
        int(row[0]),
        as_utc(row[1]) if row[1] is not None else None,
        {str(t): int(n) for t, n in failed},
    )


async def purge(db: AsyncConnection, *, finished_before: datetime) -> int:
    """Forget deliveries that ended (succeeded or failed) before `finished_before`."""
    result = await db.execute(
        delete(_D).where(_D.c.status.in_((SUCCEEDED, FAILED)), _D.c.finished_at < finished_before)
    )
    return int(result.rowcount or 0)


async def release(db: AsyncConnection, *, owner: str) -> int:
    """Give back the deliveries `owner` holds (it is stopping): due again at once, for any
    dispatcher. Their attempt may have reached the receiver: delivery is at least once."""
    d = _D.c
    result = await db.execute(
        update(_D)
        .where(d.lease_owner == owner, d.status == DELIVERING)
        .values(
            status=PENDING,
            lease_owner=None,
            lease_expires_at=None,
            attempts=d.attempts - 1,
        )
    )
    return int(result.rowcount or 0)
