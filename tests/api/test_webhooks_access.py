"""Webhook subscriptions: who may do what, and what a subscription may point at."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.core.settings import Settings
from service.notifications import subscriptions
from service.notifications.safety import UrlPolicy
from tests.api.conftest import ProblemCheck
from tests.conftest import SigningKey, make_settings

MINE = {"org": "RX1", "scopes": ("webhooks:manage",)}
THEIRS = {"org": "A81001", "scopes": ("webhooks:manage",)}
PUBLIC_URL = "https://hooks.partner.example/referrals"


@pytest.fixture
def settings(database_url: str, signing_key: SigningKey) -> Settings:
    return make_settings(
        database_url, signing_key.public_file, webhook_dispatcher=False, webhook_max_subscriptions=2
    )


def resolve_to(app: FastAPI, *addresses: str) -> None:
    """Every host name resolves to `addresses` (a stub: no DNS in tests)."""

    async def stub(_host: str, _port: int) -> list[str]:
        return list(addresses)

    app.state.services.url_policy = UrlPolicy(allow_insecure=False, resolver=stub)


async def create(client: httpx.AsyncClient, auth: Any, **body: Any) -> httpx.Response:
    payload = {"url": PUBLIC_URL, "events": ["referral.status_changed"], **body}
    return await client.post("/v1/webhook-subscriptions", json=payload, headers=auth(**MINE))


async def test_another_organisation_gets_404_everywhere_and_lists_none(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, problem: ProblemCheck
) -> None:
    resolve_to(app, "93.184.215.14")
    made = await create(client, auth)
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    base = f"/v1/webhook-subscriptions/{sid}"
    ping = await client.post(f"{base}/ping", headers=auth(**MINE))
    delivery_id = ping.json()["id"]
    attempts = [
        client.delete(base, headers=auth(**THEIRS)),
        client.post(f"{base}/rotate-secret", headers=auth(**THEIRS)),
        client.post(f"{base}/ping", headers=auth(**THEIRS)),
        client.get(f"{base}/deliveries", headers=auth(**THEIRS)),
        client.post(f"{base}/deliveries/{delivery_id}/retry", headers=auth(**THEIRS)),
    ]
    for attempt in attempts:
        problem(await attempt, 404)
    listed = await client.get("/v1/webhook-subscriptions", headers=auth(**THEIRS))
    assert listed.status_code == 200 and listed.json() == []
    # Still there and unchanged for its owner.
    [mine] = (await client.get("/v1/webhook-subscriptions", headers=auth(**MINE))).json()
    assert mine["id"] == sid and "secret" not in mine
    unknown = f"/v1/webhook-subscriptions/{uuid.uuid4()}"
    problem(await client.delete(unknown, headers=auth(**MINE)), 404)
    problem(await client.post(f"{base}/deliveries/999999/retry", headers=auth(**MINE)), 404)
    # Beyond the id column's range: a bad request naming it, not a database error (500).
    for beyond in ("9223372036854775808", "99999999999999999999", "0"):
        retried = await client.post(f"{base}/deliveries/{beyond}/retry", headers=auth(**MINE))
        problem(retried, 422, fields=("delivery_id",))


async def test_the_scope_is_required(
    client: httpx.AsyncClient, auth: Any, problem: ProblemCheck
) -> None:
    partner = {"org": "RX1", "scopes": ("referrals:submit", "referrals:read")}
    problem(await client.get("/v1/webhook-subscriptions", headers=auth(**partner)), 403)
    problem(
        await client.post(
            "/v1/webhook-subscriptions",
            json={"url": PUBLIC_URL, "events": ["ping"]},
            headers=auth(**partner),
        ),
        403,
    )
    problem(await client.get("/v1/webhook-subscriptions"), 401)


async def test_bad_requests_name_the_field(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, problem: ProblemCheck
) -> None:
    resolve_to(app, "93.184.215.14")
    problem(await create(client, auth, colour="blue"), 422, fields=("colour",))
    problem(await create(client, auth, events=["referral.deleted"]), 422, fields=("events[0]",))
    problem(await create(client, auth, events=[]), 422, fields=("events",))
    long_url = "https://hooks.partner.example/" + "a" * 2048
    problem(await create(client, auth, url=long_url), 422, fields=("url",))
    problem(await create(client, auth, url="http://hooks.partner.example/x"), 422, fields=("url",))
    problem(
        await create(client, auth, url="https://user:pw@hooks.partner.example/x"),
        422,
        fields=("url",),
    )
    # New referrals are for the team only.
    problem(await create(client, auth, events=["referral.created"]), 422, fields=("events",))
    alerts = ["referral.safeguarding_alert"]
    problem(await create(client, auth, events=alerts), 422, fields=("events",))
    # Ambiguity is refused: an event named twice is a mistake to point out, not to guess at.
    twice = ["referral.status_changed", "referral.status_changed"]
    problem(await create(client, auth, events=twice), 422, fields=("events",))
    # A URL the HTTP client cannot read (an octal IPv4 host) would fail at every delivery.
    problem(await create(client, auth, url="https://0135.0270.0327.016/x"), 422, fields=("url",))
    listed = await client.get("/v1/webhook-subscriptions", headers=auth(**MINE))
    assert listed.json() == []


async def test_a_host_name_that_cannot_be_encoded_is_a_bad_request(
    client: httpx.AsyncClient, auth: Any, problem: ProblemCheck
) -> None:
    # The real resolver: IDNA refuses an empty or a 64-character label before any DNS query.
    for host in ("a..partner.example", "a" * 64 + ".partner.example"):
        problem(await create(client, auth, url=f"https://{host}/x"), 422, fields=("url",))


async def test_a_host_that_never_resolves_is_refused_in_bounded_time(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    problem: ProblemCheck,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(subscriptions, "RESOLVE_TIMEOUT", 0.1)

    async def silent(_host: str, _port: int) -> list[str]:
        await asyncio.Event().wait()  # a name server that never answers
        return []

    app.state.services.url_policy = UrlPolicy(allow_insecure=False, resolver=silent)
    async with asyncio.timeout(10):  # (a bound for the test, not a timing assertion)
        refused = await create(client, auth)
    problem(refused, 422, fields=("url",))


async def test_a_delivery_is_found_only_under_its_own_subscription(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, problem: ProblemCheck
) -> None:
    """Another organisation's delivery id under that organisation's own subscription is 404."""
    resolve_to(app, "93.184.215.14")
    mine = (await create(client, auth)).json()["id"]
    theirs = await client.post(
        "/v1/webhook-subscriptions",
        json={"url": PUBLIC_URL, "events": ["ping"]},
        headers=auth(**THEIRS),
    )
    their_base = f"/v1/webhook-subscriptions/{theirs.json()['id']}"
    ping = await client.post(f"/v1/webhook-subscriptions/{mine}/ping", headers=auth(**MINE))
    delivery_id = ping.json()["id"]
    retried = await client.post(
        f"{their_base}/deliveries/{delivery_id}/retry", headers=auth(**THEIRS)
    )
    problem(retried, 404)
    theirs_listed = await client.get(f"{their_base}/deliveries", headers=auth(**THEIRS))
    assert theirs_listed.json() == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "::1",
        "10.1.2.3",  # RFC 1918
        "172.16.0.1",
        "192.168.1.1",
        "fd12:3456::1",  # unique local
        "169.254.10.1",  # link-local
        "fe80::1",
        "100.64.0.1",  # CGNAT
        "224.0.0.1",  # multicast
        "ff02::1",
        "0.0.0.0",  # unspecified
        "::",
        "169.254.169.254",  # cloud metadata
        "fd00:ec2::254",
        "192.0.2.10",  # documentation: not global
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of the metadata address
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo
        "fec0::1",  # site-local (deprecated)
    ],
)
async def test_a_url_that_resolves_inwards_is_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, problem: ProblemCheck, address: str
) -> None:
    resolve_to(app, "93.184.215.14", address)  # one bad address is enough
    body = problem(await create(client, auth), 422, fields=("url",))
    assert PUBLIC_URL not in str(body)


async def test_an_organisation_has_a_limited_number_of_subscriptions(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, problem: ProblemCheck
) -> None:
    resolve_to(app, "93.184.215.14")
    for _ in range(2):
        assert (await create(client, auth)).status_code == 201
    problem(await create(client, auth), 409)
    other = await client.post(
        "/v1/webhook-subscriptions",
        json={"url": PUBLIC_URL, "events": ["ping"]},
        headers=auth(**THEIRS),
    )
    assert other.status_code == 201


async def test_concurrent_creates_never_pass_the_limit(
    app: FastAPI, client: httpx.AsyncClient, auth: Any
) -> None:
    # Counting and inserting in separate statements let simultaneous creates all see room
    # (PostgreSQL: 6 of 6 were made under a limit of 2).
    resolve_to(app, "93.184.215.14")
    answers = await asyncio.gather(*(create(client, auth) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [201, 201, 409, 409, 409, 409]
    listed = await client.get("/v1/webhook-subscriptions", headers=auth(**MINE))
    assert len(listed.json()) == 2
