"""Request and response schemas for webhook subscriptions (notifications.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from api.schemas.common import FREE_TEXT_PATTERN, RequestModel, ResponseModel


class EventType(StrEnum):
    referral_created = "referral.created"
    referral_safeguarding_alert = "referral.safeguarding_alert"
    referral_status_changed = "referral.status_changed"
    ping = "ping"


WebhookUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        pattern=r"^[hH][tT][tT][pP][sS]?://[^\s]+$",
        description="Where to POST events: `https://` only. Refused if the host resolves to a "
        "loopback, private, link-local or otherwise non-public address.",
        examples=["https://partner.example/webhooks/referrals"],
    ),
]


class WebhookSubscriptionCreate(RequestModel):
    url: WebhookUrl
    events: list[EventType] = Field(
        min_length=1,
        max_length=4,
        description="Each event once (a repeated one is refused, 422). `referral.created` and "
        "`referral.safeguarding_alert` need a token with `referrals:triage` (the team).",
        json_schema_extra={"uniqueItems": True},
    )
    description: str | None = Field(default=None, max_length=255, pattern=FREE_TEXT_PATTERN)


class WebhookSubscriptionPublic(ResponseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    team: bool = Field(description="Made with `referrals:triage`: hears of every referral.")
    created_at: datetime
    disabled_at: datetime | None = Field(
        description="Set when the endpoint answered 410 Gone; a ping or a retry enables it."
    )
    disabled_reason: str | None


class WebhookSubscriptionWithSecret(WebhookSubscriptionPublic):
    secret: str = Field(
        description="The signing secret (`whsec_…`), shown this once: keep it safe.",
    )


class WebhookDeliveryPublic(ResponseModel):
    id: int
    event_id: str = Field(description="The `webhook-id` header: stable across retries.")
    type: str
    referral_id: str | None
    status: str = Field(description="`pending`, `delivering`, `succeeded` or `failed`.")
    attempt: int = Field(description="Attempts made so far.")
    status_code: int | None = Field(description="The last attempt's HTTP status, if any.")
    error: str | None = Field(description="The last attempt's error class, if it failed.")
    at: datetime | None = Field(description="When the last attempt was made.")
    next_attempt_at: datetime | None
    created_at: datetime
