"""Audit trail responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PlainSerializer

from api.schemas.common import ResponseModel
from service.core.canonical import utc_timestamp


class Actor(ResponseModel):
    sub: str
    org: str


def _correlation_id_is_optional(schema: dict[str, Any]) -> None:
    # The one field not always sent (see AuditEventPublic.correlation_id); when sent, a string.
    schema["required"] = [name for name in schema.get("required", []) if name != "correlation_id"]
    documented = schema["properties"]["correlation_id"]
    documented.pop("anyOf", None)
    documented.pop("default", None)
    documented["type"] = "string"


class AuditEventPublic(ResponseModel):
    model_config = ConfigDict(json_schema_extra=_correlation_id_is_optional)

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
    request_id: str = Field(
        description="The service's own id for the request (its `X-Request-ID` response header)."
    )
    # Left unset, not null, when there is none: the route leaves unset fields out, so that an
    # event's hash recomputes from exactly the fields returned, as it always has.
    correlation_id: str | None = Field(
        default=None,
        description="The caller's own `X-Request-ID`, as it sent it (its `X-Correlation-ID` "
        "response header). Present only when one was sent, and then part of the hashed "
        "event. With the scope `audit:read`, shown only on your own organisation's events.",
    )
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
    events_checked: int = Field(
        description="How many events this verification re-hashed: those after the checkpoints."
    )
    first_invalid_seq: int | None
    problem: str | None
    head_hash: str = Field(description="SHA-256 over every chain's head: anchor it elsewhere.")
    heads: list[ChainHeadPublic]
    mode: Literal["incremental", "full"] = Field(
        description="`incremental` over HTTP: each chain is verified from its last verified "
        "checkpoint on, and events at or before it are not re-checked (a full run, which "
        "trusts no checkpoint, is `referral-service audit verify --full`)."
    )
    checkpoints: list[ChainHeadPublic] = Field(
        description="The checkpoint each chain was verified from (chains without one were "
        "verified from their first event). The chains found clean get a new checkpoint at "
        "their head."
    )
    events_before_checkpoints: int = Field(
        description="Events at or before those checkpoints: verified earlier, not re-checked."
    )
