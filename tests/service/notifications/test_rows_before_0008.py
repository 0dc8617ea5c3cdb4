"""A referral stored before the webhook tables existed (0008) moves and is announced."""

from __future__ import annotations

from typing import Any

import httpx

from api.app import create_app
from tests.conftest import SigningKey, make_settings
from tests.factories import make_referral_body
from tests.service.referrals.test_rows_before_0004 import (
    empty_database_url,  # noqa: F401 (a fixture)
    store_as_release_0003_did,
)
from tests.webhooks import receiver

TEAM = {"org": "PIT01", "scopes": ("referrals:triage", "webhooks:manage")}


async def test_an_old_referral_moved_after_0008_is_announced(
    empty_database_url: str,  # noqa: F811
    signing_key: SigningKey,
    auth: Any,
) -> None:
    referral_id = await store_as_release_0003_did(empty_database_url, make_referral_body())
    settings = make_settings(
        empty_database_url,
        signing_key.public_file,
        webhook_allow_insecure=True,
        webhook_poll_seconds=0.05,
    )
    app = create_app(settings)
    with receiver() as hook:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                made = await client.post(
                    "/v1/webhook-subscriptions",
                    json={"url": hook.url, "events": ["referral.status_changed"]},
                    headers=auth(**TEAM),
                )
                assert made.status_code == 201, made.text
                moved = await client.post(
                    f"/v1/referrals/{referral_id}/triage",
                    json={"outcome": "step_up"},
                    headers={**auth(**TEAM), "If-Match": 'W/"1"'},
                )
                assert moved.status_code == 200, moved.text
                [message] = await hook.wait_for(1)
    data = message.verify(made.json()["secret"])["data"]
    assert (data["id"], data["reference"]) == (referral_id, "PIR-OLD0-ROW1")
    assert (data["previous_status"], data["status"], data["version"]) == (
        "awaiting_triage",
        "accepted",
        2,
    )
