"""Webhooks end to end: subscriptions through the API, events from intake and the moves, sent
by the in-process dispatcher to a real receiver on 127.0.0.1 and verified as a receiver would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from service.core.settings import Settings
from service.models import AUDIT_EVENTS
from tests.api.lifecycle.helpers import CLOSE, CONFIRM, REFERRER, WITHDRAW, moved, submit
from tests.conftest import SigningKey, make_settings
from tests.factories import make_referral_body
from tests.webhooks import Receiver, receiver

WEBHOOKS = ("webhooks:manage",)
TEAM_HOOKS = {"org": "PIT01", "scopes": ("referrals:triage", "webhooks:manage")}
REFERRER_HOOKS = {"org": "RX1", "scopes": WEBHOOKS}
OTHER_ORG = {"org": "A81001", "scopes": WEBHOOKS}
# Distinctive personal data: none of it may appear in any message.
PERSONAL = ("Zephyrine", "Quillfeather", "9434765919", "07700 900123", "Marigold")


@pytest.fixture
def settings(database_url: str, signing_key: SigningKey) -> Settings:
    return make_settings(
        database_url,
        signing_key.public_file,
        webhook_allow_insecure=True,
        webhook_poll_seconds=0.05,
    )


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


@pytest.fixture
def other_hook() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


async def subscribe(
    client: httpx.AsyncClient, auth: Any, who: dict[str, Any], url: str, events: list[str]
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-subscriptions", json={"url": url, "events": events}, headers=auth(**who)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def personal_referral(**overrides: Any) -> dict[str, Any]:
    return {
        "infant__given_name": "Zephyrine",
        "infant__family_name": "Quillfeather",
        "caregivers__0__given_name": "Marigold",
        "caregivers__0__phone": "07700 900123",
        **overrides,
    }


def verified(received: list[Any], secret: str) -> list[dict[str, Any]]:
    messages = [r.verify(secret) for r in received]
    for r in received:
        text = r.body.decode()
        assert not any(p in text for p in PERSONAL), text
    return messages


async def test_the_team_hears_of_intake_and_both_hear_of_every_move(
    client: httpx.AsyncClient, auth: Any, hook: Receiver, other_hook: Receiver
) -> None:
    team = await subscribe(
        client,
        auth,
        TEAM_HOOKS,
        hook.url,
        ["referral.created", "referral.safeguarding_alert", "referral.status_changed"],
    )
    referrer = await subscribe(
        client, auth, REFERRER_HOOKS, other_hook.url, ["referral.status_changed"]
    )
    referral = await submit(client, auth, **personal_referral())
    rid = referral["id"]
    [created] = verified(await hook.wait_for(1), team["secret"])
    assert created["type"] == "referral.created"
    assert created["data"]["id"] == rid
    assert created["data"]["status"] == "awaiting_triage"
    assert created["data"]["links"] == {"status": f"/v1/referrals/{rid}/status"}

    accepted = await moved(client, auth, rid, "triage", CONFIRM, 1)
    closed = await moved(client, auth, rid, "close", CLOSE, accepted["version"])
    team_messages = verified(await hook.wait_for(3), team["secret"])
    referrer_messages = verified(await other_hook.wait_for(2), referrer["secret"])
    for messages in (team_messages[1:], referrer_messages):
        assert [m["type"] for m in messages] == ["referral.status_changed"] * 2
        assert [(m["data"]["previous_status"], m["data"]["status"]) for m in messages] == [
            ("awaiting_triage", "accepted"),
            ("accepted", "closed"),
        ]
        assert [m["data"]["version"] for m in messages] == [2, closed["version"]]
        assert messages[0]["data"]["provisional"] is False
    # Stable ids, one per event: the same event to two subscribers shares its webhook-id.
    assert team_messages[1]["data"] == referrer_messages[0]["data"]
    assert set(team_messages[0]) == {"type", "timestamp", "data"}


async def test_withdrawal_is_sent_to_the_referrer(
    client: httpx.AsyncClient, auth: Any, hook: Receiver
) -> None:
    mine = await subscribe(client, auth, REFERRER_HOOKS, hook.url, ["referral.status_changed"])
    referral = await submit(client, auth, **personal_referral())
    await moved(client, auth, referral["id"], "withdraw", WITHDRAW, 1, who=REFERRER)
    [message] = verified(await hook.wait_for(1), mine["secret"])
    assert message["data"]["status"] == "withdrawn"
    assert message["data"]["previous_status"] == "awaiting_triage"


async def test_another_organisation_hears_nothing_of_referrals_it_did_not_make(
    client: httpx.AsyncClient, auth: Any, hook: Receiver, other_hook: Receiver
) -> None:
    await subscribe(client, auth, OTHER_ORG, other_hook.url, ["referral.status_changed", "ping"])
    mine = await subscribe(client, auth, REFERRER_HOOKS, hook.url, ["referral.status_changed"])
    referral = await submit(client, auth)
    await moved(client, auth, referral["id"], "triage", CONFIRM, 1)
    await hook.wait_for(1)
    # The other organisation's ping is sent after: when it arrives, the move was not.
    others = await client.get("/v1/webhook-subscriptions", headers=auth(**OTHER_ORG))
    [theirs] = others.json()
    ping = await client.post(
        f"/v1/webhook-subscriptions/{theirs['id']}/ping", headers=auth(**OTHER_ORG)
    )
    assert ping.status_code == 202
    [only] = await other_hook.wait_for(1)
    assert only.json()["type"] == "ping"
    assert mine["id"] not in {s["id"] for s in others.json()}


async def test_a_safeguarding_alert_comes_first_and_a_replay_sends_nothing(
    client: httpx.AsyncClient, auth: Any, hook: Receiver
) -> None:
    team = await subscribe(
        client, auth, TEAM_HOOKS, hook.url, ["referral.created", "referral.safeguarding_alert"]
    )
    body = personal_referral(safeguarding__immediate_risk=True)
    headers = {**auth(**REFERRER), "Idempotency-Key": "alert-1"}
    first = await client.post("/v1/referrals", json=make_referral_body(**body), headers=headers)
    assert first.status_code == 201, first.text
    messages = verified(await hook.wait_for(2), team["secret"])
    assert [m["type"] for m in messages] == [
        "referral.safeguarding_alert",
        "referral.created",
    ]
    assert all(m["data"]["safeguarding_alert"] for m in messages)
    again = await client.post("/v1/referrals", json=make_referral_body(**body), headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    ping = await client.post(
        f"/v1/webhook-subscriptions/{team['id']}/ping", headers=auth(**TEAM_HOOKS)
    )
    assert ping.status_code == 202
    received = await hook.wait_for(3)
    assert [r.json()["type"] for r in received][2:] == ["ping"]


async def test_rotation_signs_with_both_secrets(
    client: httpx.AsyncClient, auth: Any, hook: Receiver
) -> None:
    made = await subscribe(client, auth, REFERRER_HOOKS, hook.url, ["ping"])
    rotated = await client.post(
        f"/v1/webhook-subscriptions/{made['id']}/rotate-secret", headers=auth(**REFERRER_HOOKS)
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != made["secret"]
    base = f"/v1/webhook-subscriptions/{made['id']}"
    await client.post(f"{base}/ping", headers=auth(**REFERRER_HOOKS))
    [message] = await hook.wait_for(1)
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    assert message.verify(new_secret)["type"] == "ping"
    assert message.verify(made["secret"])["type"] == "ping"


async def test_deliveries_are_listed_and_can_be_retried(
    client: httpx.AsyncClient, auth: Any, hook: Receiver
) -> None:
    made = await subscribe(client, auth, REFERRER_HOOKS, hook.url, ["ping"])
    base = f"/v1/webhook-subscriptions/{made['id']}"
    queued = (await client.post(f"{base}/ping", headers=auth(**REFERRER_HOOKS))).json()
    await hook.wait_for(1)
    listed = await client.get(f"{base}/deliveries", headers=auth(**REFERRER_HOOKS))
    [delivery] = listed.json()
    assert delivery["event_id"] == queued["event_id"]
    assert delivery["type"] == "ping"
    assert delivery["attempt"] >= 1
    retried = await client.post(
        f"{base}/deliveries/{delivery['id']}/retry", headers=auth(**REFERRER_HOOKS)
    )
    assert retried.status_code == 202, retried.text
    received = await hook.wait_for(2)
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]


async def test_subscriptions_are_audited_without_secrets_or_urls(
    client: httpx.AsyncClient, auth: Any, settings: Settings
) -> None:
    url = "http://user:token-in-url@127.0.0.1:9/hook"
    refused = await client.post(
        "/v1/webhook-subscriptions",
        json={"url": url, "events": ["ping"]},
        headers=auth(**REFERRER_HOOKS),
    )
    assert refused.status_code == 422
    made = await subscribe(client, auth, REFERRER_HOOKS, "http://127.0.0.1:9/h?k=v", ["ping"])
    base = f"/v1/webhook-subscriptions/{made['id']}"
    rotated = await client.post(f"{base}/rotate-secret", headers=auth(**REFERRER_HOOKS))
    assert (await client.delete(base, headers=auth(**REFERRER_HOOKS))).status_code == 204
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as db:
            rows = (
                await db.execute(
                    select(AUDIT_EVENTS.c.action, AUDIT_EVENTS.c.details).where(
                        AUDIT_EVENTS.c.resource_id == made["id"]
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [r.action for r in rows] == [
        "webhook.subscription_created",
        "webhook.subscription_secret_rotated",
        "webhook.subscription_deleted",
    ]
    text = str([r.details for r in rows])
    for secret in (made["secret"], rotated.json()["secret"], "127.0.0.1", "k=v"):
        assert secret not in text
    gone = await client.get("/v1/webhook-subscriptions", headers=auth(**REFERRER_HOOKS))
    assert gone.json() == []
