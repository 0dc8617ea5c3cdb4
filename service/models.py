"""Every table, in one module (the SQLModel docs' advice against circular imports)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utc_column(*, index: bool = False) -> Any:
    return Column(DateTime(timezone=True), nullable=False, index=index)


class Referral(SQLModel, table=True):
    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_org_received", "org", "received_at", "id"),
        Index("ix_referrals_received", "received_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    reference: str = Field(sa_column=Column(String(16), nullable=False, unique=True))
    org: str = Field(max_length=16)
    submitted_by: str = Field(max_length=255)
    received_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())
    status: str = Field(max_length=32)
    outcome: str = Field(max_length=16)
    priority: str = Field(max_length=16)
    eligible: bool
    provisional: bool
    safeguarding_alert: bool
    ruleset_id: str = Field(max_length=64)
    ruleset_version: str = Field(max_length=64)
    ruleset_sha256: str = Field(max_length=64)
    # The validated, normalised submission: personal data, returned only to readers. Stored as
    # it was accepted and never rewritten: `payload_version` names its shape, and readers
    # upcast older shapes (service/referrals/payloads.py) instead of re-validating them.
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    payload_version: int = Field(sa_column=Column(Integer, nullable=False, server_default="1"))
    # The decision exactly as given at intake, with its ruleset identity. Never changed: a
    # clinician's triage is kept beside it, so both stay visible.
    decision: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # 1 at intake, +1 per move: the ETag, and the guard against two clinicians at once.
    version: int = Field(sa_column=Column(Integer, nullable=False, server_default="1"))
    # The moves' own records (lifecycle.md), each with its reason (the comment is personal
    # data, returned only with the whole referral). Null until the move is made.
    triage: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    withdrawal: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    closure: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Keys for possible duplicates (service/referrals/duplicates.py).
    match_nhs_number: str | None = Field(default=None, max_length=10, index=True)
    match_name_key: str | None = Field(default=None, max_length=64, index=True)


class ReferralMove(SQLModel, table=True):
    """One line of a referral's history: intake, then each move. No personal data."""

    __tablename__ = "referral_moves"
    __table_args__ = (UniqueConstraint("referral_id", "version", name="uq_referral_move_version"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    referral_id: str = Field(max_length=36, index=True)
    version: int  # the referral's version this move produced (1: intake)
    action: str = Field(max_length=16)
    from_status: str | None = Field(default=None, max_length=32)
    to_status: str = Field(max_length=32)
    at: datetime = Field(sa_column=utc_column())
    by_org: str = Field(max_length=16)
    reason_code: str | None = Field(default=None, max_length=64)


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    org: str = Field(primary_key=True, max_length=16)
    key: str = Field(primary_key=True, max_length=255)
    request_sha256: str = Field(max_length=64)
    referral_id: str = Field(max_length=36)
    created_at: datetime = Field(sa_column=utc_column(index=True))
    # The referral's changeable columns as the first response gave them, so that a replay
    # answers with that response and not with the referral as it is now (null: keys stored
    # before this column existed, when nothing about a referral could change yet).
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("chain", "chain_seq", name="uq_audit_chain_position"),)

    seq: int | None = Field(
        default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    chain: int
    chain_seq: int
    occurred_at: datetime = Field(sa_column=utc_column())
    actor_sub: str = Field(max_length=255)
    actor_org: str = Field(max_length=16, index=True)  # the organisation view of the trail
    action: str = Field(max_length=64, index=True)
    resource_type: str = Field(max_length=32)
    resource_id: str | None = Field(default=None, max_length=64, index=True)
    outcome: str = Field(max_length=32)
    request_id: str = Field(max_length=64)  # the service's own id for the request
    # The caller's X-Request-ID, kept apart from ours: a caller chooses it, so it may repeat
    # another organisation's request id and must never be taken for one of ours (0007).
    correlation_id: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The last position of each audit chain; the row lock serialises appends to one chain."""

    __tablename__ = "audit_chain_heads"

    chain: int = Field(primary_key=True)
    chain_seq: int
    seq: int
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """The last position of each chain that a verification found valid (0007).

    An incremental verification starts each chain here, from this hash as the expected
    `prev_hash`, instead of from the chain's first event. Only moved forward; only written for a
    chain that verified clean. Anyone who can write the database can forge one, which is why
    `referral-service audit verify --full` ignores them for the chains and checks each of them
    against the event at its position instead.
    """

    __tablename__ = "audit_checkpoints"

    chain: int = Field(primary_key=True)
    chain_seq: int
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
    verified_at: datetime = Field(sa_column=utc_column())


class WebhookSubscription(SQLModel, table=True):
    """A URL of an organisation's that wants events (notifications.md). Its secrets are kept so
    that the service can sign: they are shown once, at creation or rotation, and never again."""

    __tablename__ = "webhook_subscriptions"

    id: str = Field(primary_key=True, max_length=36)
    org: str = Field(max_length=16, index=True)
    # Made with `referrals:triage`: the team, which hears of every referral of every org.
    team: bool
    url: str = Field(max_length=2048)
    # Space-delimited with a space at each end (" referral.created ping "), so that one
    # portable LIKE finds the subscriptions of an event type in the intake's INSERT … SELECT.
    events: str = Field(max_length=512)
    description: str | None = Field(default=None, max_length=255)
    # Sealed under REFERRAL_WEBHOOK_SECRET_KEYS when set (service/notifications/sealing.py).
    secret: str = Field(max_length=255)
    # Rotation: the previous secret still signs (a second signature) until it expires.
    previous_secret: str | None = Field(default=None, max_length=255)
    previous_secret_expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(sa_column=utc_column())
    created_by: str = Field(max_length=255)
    disabled_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    disabled_reason: str | None = Field(default=None, max_length=64)


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one row per event and subscription, written by the transaction that made the
    event. Fanned out at write time, so intake pays one INSERT … SELECT (which writes nothing
    when no subscription matches), and per-referral order per subscription is one NOT EXISTS
    on the (subscription_id, referral_id, id) index. Ids, codes and flags only: no personal
    data, so the rows may be kept and shown."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "subscription_id", "referral_id", "id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    event_id: str = Field(max_length=40)  # webhook-id: stable across retries
    event_type: str = Field(max_length=64)
    subscription_id: str = Field(max_length=36)
    referral_id: str | None = Field(default=None, max_length=36)  # None: ping
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # 0 for a safeguarding alert: claimed before anything else that is due.
    rank: int = Field(sa_column=Column(Integer, nullable=False, server_default="1"))
    created_at: datetime = Field(sa_column=utc_column())
    status: str = Field(max_length=16)  # pending, delivering, succeeded, failed
    attempts: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime = Field(sa_column=utc_column())
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    last_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=32)  # an error class, never a body
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


# Core tables for the hot paths, where SQLAlchemy Core skips the ORM's unit-of-work overhead.
REFERRALS = _table(Referral)
REFERRAL_MOVES = _table(ReferralMove)
IDEMPOTENCY_KEYS = _table(IdempotencyRecord)
AUDIT_EVENTS = _table(AuditEvent)
AUDIT_CHAIN_HEADS = _table(AuditChainHead)
AUDIT_CHECKPOINTS = _table(AuditCheckpoint)
WEBHOOK_SUBSCRIPTIONS = _table(WebhookSubscription)
WEBHOOK_DELIVERIES = _table(WebhookDelivery)
