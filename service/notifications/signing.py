"""Standard Webhooks v1 signatures: secrets, headers and the message body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as random_source
from datetime import datetime
from typing import Any

from service.core.canonical import as_utc

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """`whsec_` and the base64 of 32 random bytes, as Standard Webhooks libraries expect."""
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets: tuple[str, ...], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three webhook-* headers: one signature per valid secret, space-separated."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets),
    }


def body(event_type: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    """The message: the event's type and time, and its ids, codes and flags."""
    message = {
        "type": event_type,
        "timestamp": as_utc(created_at).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
