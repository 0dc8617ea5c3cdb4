"""Audit trail responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, PlainSerializer

from api.schemas.common import ResponseModel
from service.core.canonical import utc_timestamp


class Actor(ResponseModel):
    sub: str
    org: str


class AuditEventPublic(ResponseModel):
    seq: int
    chain: int
    chain_seq: int
    # Serialised exactly as it was hashed (always with microseconds), so that anyone can
    # recompute an event's hash from this response.
    occurred_at: Annotated[datetime, PlainSerializer(utc_timestamp, return_type=str)]
    actor: Actor
    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    request_id: str
    details: dict[str, Any] = Field(description="Ids, codes and counts; never personal data.")
    prev_hash: str | None = Field(
        description="The hash of the event before this one in its chain (all zeros for the "
        "first). Null with the scope `audit:read`: only `audit:read_all` sees the chain."
    )
    hash: str | None = Field(
        description="SHA-256 over the canonical JSON of every other field of the event as "
        "stored. Null with the scope `audit:read`: an organisation's view shows its refused "
        "look-ups of another organisation's referral and of a missing one alike, and a hash "
        "recomputed from either stored form would tell them apart; the chains also run "
        "through other organisations' events, so this view could not verify them anyway."
    )


class AuditEventsPage(ResponseModel):
    items: list[AuditEventPublic]
    next_cursor: str | None


class ChainHeadPublic(ResponseModel):
    chain: int
    chain_seq: int
    seq: int
    hash: str


class AuditVerification(ResponseModel):
    valid: bool
    events_checked: int
    first_invalid_seq: int | None
    problem: str | None
    head_hash: str = Field(description="SHA-256 over every chain's head: anchor it elsewhere.")
    heads: list[ChainHeadPublic]
