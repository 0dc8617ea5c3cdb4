"""Idempotency-Key: replays, conflicting bodies, organisations apart, concurrent retries."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from service.referrals.idempotency import lock_id  # the lock another instance would hold
from tests.factories import make_referral_body

TEAM = {"org": "PIT01", "scopes": ("referrals:triage",)}


def keyed(auth, key: str, **kwargs) -> dict[str, str]:
    return {**auth(**kwargs), "Idempotency-Key": key}


async def all_referral_ids(client: httpx.AsyncClient, auth) -> list[str]:
    response = await client.get("/v1/referrals", params={"limit": 100}, headers=auth(**TEAM))
    assert response.status_code == 200
    return [item["id"] for item in response.json()["items"]]


async def test_same_key_same_body_replays_the_original(client: httpx.AsyncClient, auth) -> None:
    body = make_referral_body()
    first = await client.post("/v1/referrals", json=body, headers=keyed(auth, "retry-1"))
    again = await client.post("/v1/referrals", json=body, headers=keyed(auth, "retry-1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert await all_referral_ids(client, auth) == [first.json()["id"]]


async def test_replay_ignores_json_key_order(client: httpx.AsyncClient, auth) -> None:
    body = make_referral_body()
    reordered = json.dumps(dict(reversed(list(body.items())))).encode()
    assert reordered != json.dumps(body).encode()
    first = await client.post("/v1/referrals", json=body, headers=keyed(auth, "k"))
    again = await client.post(
        "/v1/referrals",
        content=reordered,
        headers={**keyed(auth, "k"), "Content-Type": "application/json"},
    )
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


async def test_without_a_key_each_submission_is_a_new_referral(
    client: httpx.AsyncClient, auth
) -> None:
    body = make_referral_body()
    first = await client.post("/v1/referrals", json=body, headers=auth())
    second = await client.post("/v1/referrals", json=body, headers=auth())
    assert first.json()["id"] != second.json()["id"]
    assert len(await all_referral_ids(client, auth)) == 2


async def test_same_key_different_body_is_422(client: httpx.AsyncClient, auth, problem) -> None:
    first = await client.post(
        "/v1/referrals", json=make_referral_body(), headers=keyed(auth, "reused")
    )
    assert first.status_code == 201
    changed = make_referral_body(concerns__duration_weeks=7)
    conflict = await client.post("/v1/referrals", json=changed, headers=keyed(auth, "reused"))
    problem(conflict, 422)
    assert await all_referral_ids(client, auth) == [first.json()["id"]]
    # The key still answers with the original for the original body.
    again = await client.post(
        "/v1/referrals", json=make_referral_body(), headers=keyed(auth, "reused")
    )
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]


async def test_keys_belong_to_one_organisation(client: httpx.AsyncClient, auth) -> None:
    body = make_referral_body()
    own = await client.post("/v1/referrals", json=body, headers=keyed(auth, "shared", org="RX1"))
    other = await client.post(
        "/v1/referrals", json=body, headers=keyed(auth, "shared", org="A81001")
    )
    assert own.status_code == other.status_code == 201
    assert own.json()["id"] != other.json()["id"]
    assert own.json()["organisation"] == "RX1"
    assert other.json()["organisation"] == "A81001"
    assert sorted(await all_referral_ids(client, auth)) == sorted(
        [own.json()["id"], other.json()["id"]]
    )
    # Each organisation's retry gets its own referral back.
    retry = await client.post(
        "/v1/referrals", json=body, headers=keyed(auth, "shared", org="A81001")
    )
    assert retry.json()["id"] == other.json()["id"]


async def test_twenty_concurrent_requests_with_one_key_make_one_referral(
    client: httpx.AsyncClient, auth, problem
) -> None:
    body = make_referral_body()
    headers = keyed(auth, "burst")
    responses = await asyncio.gather(
        *(client.post("/v1/referrals", json=body, headers=headers) for _ in range(20))
    )
    created = [r for r in responses if r.status_code == 201]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_flight) == 20, [r.status_code for r in responses]
    assert created, "no request succeeded"
    assert len({r.json()["id"] for r in created}) == 1
    for response in in_flight:
        problem(response, 409)
    assert await all_referral_ids(client, auth) == [created[0].json()["id"]]


@pytest.mark.postgres_only
async def test_a_request_still_in_flight_with_the_key_is_409(
    client: httpx.AsyncClient, auth, problem, database_url: str
) -> None:
    # Another instance holding the key's lock is, to this one, a request still in flight.
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    other_instance = await asyncpg.connect(dsn)
    try:
        await other_instance.execute("SELECT pg_advisory_lock($1)", lock_id("RX1", "busy"))
        busy = await client.post(
            "/v1/referrals", json=make_referral_body(), headers=keyed(auth, "busy")
        )
        problem(busy, 409)
        # A different key, or the same key for another organisation, is not held up.
        free = await client.post(
            "/v1/referrals", json=make_referral_body(), headers=keyed(auth, "busy", org="A81001")
        )
        assert free.status_code == 201
        await other_instance.execute("SELECT pg_advisory_unlock($1)", lock_id("RX1", "busy"))
    finally:
        await other_instance.close()
    done = await client.post(
        "/v1/referrals", json=make_referral_body(), headers=keyed(auth, "busy")
    )
    assert done.status_code == 201, done.text
    ids = await all_referral_ids(client, auth)
    assert sorted(ids) == sorted([free.json()["id"], done.json()["id"]])


async def _move_behind_the_api(app, referral_id: str) -> None:
    """A later change to the referral (as triage will make): status, provisional and time."""
    from sqlalchemy import update

    from service.models import REFERRALS

    async with app.state.services.engine.begin() as connection:
        await connection.execute(
            update(REFERRALS)
            .where(REFERRALS.c.id == referral_id)
            .values(status="accepted", provisional=False, updated_at=datetime.now(UTC))
        )


async def test_a_replay_returns_the_first_response_not_the_referral_as_it_is_now(
    app, client: httpx.AsyncClient, auth
) -> None:
    body = make_referral_body()
    first = await client.post("/v1/referrals", json=body, headers=keyed(auth, "moved-on"))
    assert first.status_code == 201
    await _move_behind_the_api(app, first.json()["id"])
    now = await client.get(first.headers["location"], headers=auth())
    assert (now.json()["status"], now.json()["decision"]["provisional"]) == ("accepted", True)
    assert now.json()["updated_at"] != first.json()["updated_at"]

    again = await client.post("/v1/referrals", json=body, headers=keyed(auth, "moved-on"))
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["status"] == "awaiting_triage"
