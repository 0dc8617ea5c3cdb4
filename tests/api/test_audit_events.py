"""Every action leaves exactly one audit event; GET /v1/audit-events and its verify endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from service.models import AUDIT_CHECKPOINTS, AUDIT_EVENTS
from tests.conftest import PARTNER_SCOPES
from tests.factories import make_referral_body
from tests.service.audit.test_audit_chain import tamper

Auth = Callable[..., dict[str, str]]
GENESIS = "0" * 64
# The team's information governance: the whole trail, exactly as stored (an organisation's
# own view, scope audit:read, is tested in test_audit_scoping.py).
AUDITOR = {"org": "AUD01", "sub": "auditor-1", "scopes": ("audit:read_all",)}


class Trail:
    """The audit_events rows, read straight from the database (reading them through the API
    would itself add events); `new()` returns those written since the last call."""

    def __init__(self, app: FastAPI) -> None:
        self.engine = app.state.services.engine
        self.seen = 0

    async def all(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            query = select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq)
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def new(self) -> list[dict[str, Any]]:
        fresh = [e for e in await self.all() if e["seq"] > self.seen]
        if fresh:
            self.seen = fresh[-1]["seq"]
        return fresh


@pytest.fixture
def trail(app: FastAPI) -> Trail:
    return Trail(app)


async def only_event(trail: Trail, response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    events = await trail.new()
    assert len(events) == 1, [e["action"] for e in events]
    event = events[0]
    assert event["request_id"] == response.headers["x-request-id"]
    return event


def recompute_hash(event: dict[str, Any]) -> str:
    """The contract's hash, written independently of service.audit."""
    body = {k: v for k, v in event.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def all_events_via_api(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/audit-events", params=params, headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


async def create(client: httpx.AsyncClient, headers: dict[str, str], **extra: str) -> str:
    created = await client.post(
        "/v1/referrals", json=make_referral_body(), headers={**headers, **extra}
    )
    assert created.status_code == 201, created.text
    referral_id: str = created.json()["id"]
    return referral_id


# --- one event per action ------------------------------------------------------------------------


async def test_each_action_records_one_event_with_its_actor_and_outcome(
    client: httpx.AsyncClient, auth: Auth, trail: Trail
) -> None:
    partner = auth(org="RX1", sub="hv-system-7")
    body = make_referral_body()

    response = await client.post(
        "/v1/referrals", json=body, headers={**partner, "X-Request-ID": "req-create-1"}
    )
    event = await only_event(trail, response, 201)
    referral = response.json()
    # The service's own id is the event's request id; the caller's is kept as its label.
    assert event["request_id"] == response.headers["x-request-id"] != "req-create-1"
    assert event["correlation_id"] == "req-create-1"
    assert (event["actor_sub"], event["actor_org"]) == ("hv-system-7", "RX1")
    assert (event["action"], event["outcome"]) == ("referral.created", "success")
    assert (event["resource_type"], event["resource_id"]) == ("referral", referral["id"])
    assert event["details"]["reference"] == referral["reference"]
    assert event["details"]["outcome"] == referral["decision"]["outcome"]

    keyed = {**partner, "Idempotency-Key": "key-1"}
    response = await client.post("/v1/referrals", json=body, headers=keyed)
    event = await only_event(trail, response, 201)
    second = response.json()["id"]
    assert (event["action"], event["outcome"], event["resource_id"]) == (
        "referral.created",
        "success",
        second,
    )
    response = await client.post("/v1/referrals", json=body, headers=keyed)
    event = await only_event(trail, response, 201)
    assert response.headers["idempotent-replayed"] == "true"
    assert (event["action"], event["outcome"], event["resource_id"]) == (
        "referral.created",
        "replayed",
        second,
    )

    response = await client.get(f"/v1/referrals/{referral['id']}", headers=partner)
    event = await only_event(trail, response, 200)
    assert (event["action"], event["outcome"]) == ("referral.read", "success")
    assert (event["resource_type"], event["resource_id"]) == ("referral", referral["id"])
    assert (event["actor_sub"], event["actor_org"]) == ("hv-system-7", "RX1")

    response = await client.get(f"/v1/referrals/{referral['id']}/status", headers=partner)
    event = await only_event(trail, response, 200)
    assert (event["action"], event["outcome"]) == ("referral.status_read", "success")
    assert event["resource_id"] == referral["id"]

    response = await client.get("/v1/referrals", headers=partner)
    event = await only_event(trail, response, 200)
    assert (event["action"], event["outcome"]) == ("referral.listed", "success")
    assert (event["resource_type"], event["resource_id"]) == ("referral", None)
    assert event["details"] == {"returned": 2}

    response = await client.post("/v1/eligibility/check", json=body, headers=partner)
    event = await only_event(trail, response, 200)
    assert (event["action"], event["outcome"]) == ("eligibility.checked", "success")
    assert (event["resource_type"], event["resource_id"]) == ("eligibility", None)
    assert (event["actor_sub"], event["actor_org"]) == ("hv-system-7", "RX1")

    missing = str(uuid.uuid4())
    response = await client.get(f"/v1/referrals/{missing}", headers=partner)
    event = await only_event(trail, response, 404)
    assert (event["action"], event["outcome"], event["resource_id"]) == (
        "referral.read",
        "not_found",
        missing,
    )
    response = await client.get(f"/v1/referrals/{missing}/status", headers=partner)
    event = await only_event(trail, response, 404)
    assert (event["action"], event["outcome"]) == ("referral.status_read", "not_found")

    # A team's triage scope may read any organisation's referral.
    triage = auth(org="RX2", sub="triage-1", scopes=("referrals:triage",))
    response = await client.get(f"/v1/referrals/{referral['id']}", headers=triage)
    event = await only_event(trail, response, 200)
    assert (event["action"], event["outcome"]) == ("referral.read", "success")
    assert (event["actor_sub"], event["actor_org"]) == ("triage-1", "RX2")

    auditor = auth(**AUDITOR)
    response = await client.get("/v1/audit-events", headers=auditor)
    event = await only_event(trail, response, 200)
    assert (event["action"], event["outcome"]) == ("audit.read", "success")
    assert (event["resource_type"], event["resource_id"]) == ("audit", None)
    assert (event["actor_sub"], event["actor_org"]) == ("auditor-1", "AUD01")
    assert event["details"] == {"returned": len(response.json()["items"])}

    response = await client.get("/v1/audit-events/verify", headers=auditor)
    event = await only_event(trail, response, 200)
    assert (event["action"], event["outcome"]) == ("audit.verified", "success")
    assert event["resource_type"] == "audit"
    assert event["details"]["events_checked"] == response.json()["events_checked"]
    assert event["details"]["valid"] in ("true", True)


@pytest.mark.parametrize(
    "method, path, scopes, resource_type",
    [
        ("POST", "/v1/referrals", ("referrals:read",), "referral"),
        ("POST", "/v1/eligibility/check", ("referrals:read",), "referral"),
        ("GET", "/v1/referrals", ("referrals:submit",), "referral"),
        ("GET", "/v1/referrals/{referral_id}", ("referrals:submit",), "referral"),
        ("GET", "/v1/referrals/{referral_id}/status", ("referrals:submit",), "referral"),
        ("GET", "/v1/audit-events", PARTNER_SCOPES, "audit"),
        ("GET", "/v1/audit-events/verify", ("referrals:triage",), "audit"),
        # An organisation's auditor sees only its own events: it cannot verify the whole trail.
        ("GET", "/v1/audit-events/verify", ("audit:read",), "audit"),
    ],
)
async def test_a_missing_scope_is_403_and_recorded_as_access_denied(
    client: httpx.AsyncClient,
    auth: Auth,
    trail: Trail,
    method: str,
    path: str,
    scopes: tuple[str, ...],
    resource_type: str,
) -> None:
    referral_id = await create(client, auth())
    await trail.new()
    headers = auth(org="RX1", sub="limited-client", scopes=scopes)
    json_body = make_referral_body() if method == "POST" else None
    response = await client.request(
        method, path.format(referral_id=referral_id), json=json_body, headers=headers
    )
    event = await only_event(trail, response, 403)
    assert (event["action"], event["outcome"]) == ("access.denied", "denied")
    assert (event["actor_sub"], event["actor_org"]) == ("limited-client", "RX1")
    assert event["resource_type"] == resource_type
    assert event["details"] == {"attempted": f"{method} {path}", "reason": "insufficient_scope"}


@pytest.mark.parametrize(
    "suffix, attempted", [("", "referral.read"), ("/status", "referral.status_read")]
)
async def test_another_organisations_referral_is_a_plain_404_recorded_as_access_denied(
    client: httpx.AsyncClient, auth: Auth, trail: Trail, suffix: str, attempted: str
) -> None:
    referral_id = await create(client, auth(org="RX1"))
    await trail.new()
    outsider = auth(org="RX2", sub="gp-system-2")

    denied = await client.get(f"/v1/referrals/{referral_id}{suffix}", headers=outsider)
    event = await only_event(trail, denied, 404)
    assert (event["action"], event["outcome"]) == ("access.denied", "denied")
    assert (event["resource_type"], event["resource_id"]) == ("referral", referral_id)
    assert (event["actor_sub"], event["actor_org"]) == ("gp-system-2", "RX2")
    assert event["details"] == {"attempted": attempted, "reason": "other_organisation"}

    missing = await client.get(f"/v1/referrals/{uuid.uuid4()}{suffix}", headers=outsider)
    assert missing.status_code == 404
    await trail.new()

    # Nothing in the answer tells the two apart.
    def comparable(response: httpx.Response) -> tuple[dict[str, Any], dict[str, str]]:
        body = {k: v for k, v in response.json().items() if k not in ("request_id", "instance")}
        # The request id differs by design, and so does the caller's remaining request budget
        # (one request later): neither says anything about the referral.
        per_request = {"x-request-id", "ratelimit"}
        headers = {k: v for k, v in response.headers.items() if k not in per_request}
        return body, headers

    assert comparable(denied) == comparable(missing)


async def test_requests_without_a_valid_token_record_nothing(
    client: httpx.AsyncClient, auth: Auth, trail: Trail
) -> None:
    referral_id = await create(client, auth())
    await trail.new()
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await client.get(f"/v1/referrals/{referral_id}", headers=headers)
        assert response.status_code == 401
    assert await trail.new() == []


async def test_events_carry_utc_times_and_the_api_shows_every_field(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    before = datetime.now(UTC)
    await create(client, auth(sub="hv-system-9"), **{"X-Request-ID": "req-shape-1"})
    after = datetime.now(UTC)
    page = await client.get("/v1/audit-events", headers=auth(**AUDITOR))
    [event] = page.json()["items"]
    assert set(event) == {
        "seq",
        "chain",
        "chain_seq",
        "occurred_at",
        "actor",
        "action",
        "resource_type",
        "resource_id",
        "outcome",
        "request_id",
        "correlation_id",
        "details",
        "prev_hash",
        "hash",
    }
    assert event["occurred_at"].endswith("Z")
    occurred = datetime.fromisoformat(event["occurred_at"])
    assert occurred.utcoffset() == timedelta(0)
    assert before <= occurred <= after
    assert event["actor"] == {"sub": "hv-system-9", "org": "RX1"}
    assert event["correlation_id"] == "req-shape-1" != event["request_id"]
    assert (event["chain_seq"], event["prev_hash"]) == (1, GENESIS)


# --- the hash, recomputed from what the API returns ---------------------------------------------


async def test_every_hash_recomputes_from_the_api_and_each_chain_links_from_genesis(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    partner = auth()
    for i in range(12):
        # Half with the caller's own request id (hashed as correlation_id), half without
        # (absent from the event, hashed exactly as events were before it existed).
        labelled = {"X-Request-ID": f"partner-{i}"} if i % 2 else {}
        referral_id = await create(client, partner, **labelled)
        assert (await client.get(f"/v1/referrals/{referral_id}", headers=partner)).is_success
    await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=auth(org="RX2"))
    auditor = auth(**AUDITOR)
    await client.get("/v1/audit-events/verify", headers=auditor)

    events = await all_events_via_api(client, auditor)
    assert len(events) == 26
    assert sum("correlation_id" in e for e in events) == 6
    chains: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        assert recompute_hash(event) == event["hash"], event
        chains.setdefault(event["chain"], []).append(event)
    for members in chains.values():
        members.sort(key=lambda e: e["chain_seq"])
        assert members[0]["chain_seq"] == 1
        assert members[0]["prev_hash"] == GENESIS
        for before, after in zip(members, members[1:], strict=False):
            assert after["chain_seq"] == before["chain_seq"] + 1
            assert after["prev_hash"] == before["hash"]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC),  # a whole second: no fraction to show
    ],
)
async def test_the_hash_recomputes_from_the_api_at_any_instant(
    client: httpx.AsyncClient, auth: Auth, pin_clock: Callable[[datetime], None], moment: datetime
) -> None:
    pin_clock(moment)
    missing = await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=auth())
    assert missing.status_code == 404
    page = await client.get("/v1/audit-events", headers=auth(**AUDITOR))
    [event] = page.json()["items"]
    assert datetime.fromisoformat(event["occurred_at"]) == moment
    assert recompute_hash(event) == event["hash"], event["occurred_at"]


# --- listing -------------------------------------------------------------------------------------


async def test_filtering_by_referral_returns_only_that_referrals_events(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    partner = auth()
    mine = await create(client, partner)
    other = await create(client, partner)
    await client.get(f"/v1/referrals/{mine}", headers=partner)
    await client.get(f"/v1/referrals/{other}", headers=partner)
    await client.get(f"/v1/referrals/{mine}/status", headers=partner)
    await client.get(f"/v1/referrals/{mine}", headers=auth(org="RX2"))  # denied
    await client.get("/v1/referrals", headers=partner)

    page = await client.get(
        "/v1/audit-events", params={"referral_id": mine}, headers=auth(**AUDITOR)
    )
    assert page.status_code == 200
    items = page.json()["items"]
    assert [(e["action"], e["outcome"]) for e in items] == [
        ("referral.created", "success"),
        ("referral.read", "success"),
        ("referral.status_read", "success"),
        ("access.denied", "denied"),
    ]
    assert {e["resource_id"] for e in items} == {mine}
    assert {e["resource_type"] for e in items} == {"referral"}


async def test_filtering_by_action(client: httpx.AsyncClient, auth: Auth) -> None:
    partner = auth()
    first = await create(client, partner)
    await create(client, partner)
    await client.get(f"/v1/referrals/{first}", headers=partner)
    await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=partner)
    await client.get(f"/v1/referrals/{first}/status", headers=partner)

    auditor = auth(**AUDITOR)
    page = await client.get("/v1/audit-events", params={"action": "referral.read"}, headers=auditor)
    assert page.status_code == 200
    assert [e["outcome"] for e in page.json()["items"]] == ["success", "not_found"]
    assert {e["action"] for e in page.json()["items"]} == {"referral.read"}

    page = await client.get(
        "/v1/audit-events", params={"action": "referral.created"}, headers=auditor
    )
    assert [e["action"] for e in page.json()["items"]] == ["referral.created"] * 2

    page = await client.get("/v1/audit-events", params={"action": "audit.read"}, headers=auditor)
    assert [e["action"] for e in page.json()["items"]] == ["audit.read"] * 2


async def test_filtering_by_since(client: httpx.AsyncClient, auth: Auth) -> None:
    partner = auth()
    await create(client, partner)
    await create(client, partner)
    await asyncio.sleep(0.01)
    since = datetime.now(UTC)
    await asyncio.sleep(0.01)
    later = await create(client, partner)
    await client.get(f"/v1/referrals/{later}", headers=partner)

    auditor = auth(**AUDITOR)
    for value in (since.isoformat(), since.isoformat().replace("+00:00", "Z")):
        page = await client.get("/v1/audit-events", params={"since": value}, headers=auditor)
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert [(e["action"], e["resource_id"]) for e in items[:2]] == [
            ("referral.created", later),
            ("referral.read", later),
        ]
        assert all(datetime.fromisoformat(e["occurred_at"]) >= since for e in items)
        # Only this test's own audit reads follow.
        assert {e["action"] for e in items[2:]} <= {"audit.read"}

    # An offset is honoured: the same instant written in another zone.
    in_new_york = since.astimezone(ZoneInfo("America/New_York"))
    page = await client.get(
        "/v1/audit-events", params={"since": in_new_york.isoformat()}, headers=auditor
    )
    assert [e["resource_id"] for e in page.json()["items"][:2]] == [later, later]


async def test_cursor_paging_returns_every_event_once_in_order(
    client: httpx.AsyncClient, auth: Auth, trail: Trail
) -> None:
    partner = auth()
    for _ in range(7):
        referral_id = await create(client, partner)
        await client.get(f"/v1/referrals/{referral_id}/status", headers=partner)

    auditor = auth(**AUDITOR)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = await client.get("/v1/audit-events", params=params, headers=auditor)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 3
        seen += [e["seq"] for e in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 50
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    # Every event there is, except the audit.read of the last page (written after its query).
    stored = [e["seq"] for e in await trail.all()]
    assert seen == stored[:-1]
    assert len(seen) >= 14


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 0},
        {"limit": -1},
        {"cursor": "abc"},
        {"cursor": "1" * 20},
        {"cursor": "9999999999999999999"},  # 19 digits, past the largest BIGINT
        {"cursor": str(2**63)},
        {"referral_id": "not-a-uuid"},
        {"since": "yesterday"},
        {"action": "Referral Read"},
    ],
)
async def test_bad_listing_parameters_are_422(
    client: httpx.AsyncClient,
    auth: Auth,
    params: dict[str, Any],
    problem: Callable[..., dict[str, Any]],
) -> None:
    response = await client.get("/v1/audit-events", params=params, headers=auth(**AUDITOR))
    problem(response, 422, fields=tuple(params))


async def test_a_hundred_events_fit_one_page(client: httpx.AsyncClient, auth: Auth) -> None:
    await create(client, auth())
    page = await client.get("/v1/audit-events", params={"limit": 100}, headers=auth(**AUDITOR))
    assert page.status_code == 200
    assert page.json()["next_cursor"] is None


# --- verify over HTTP ----------------------------------------------------------------------------


async def test_verify_over_http_reports_the_first_bad_event_after_the_checkpoints(
    client: httpx.AsyncClient, auth: Auth, trail: Trail, database_url: str
) -> None:
    partner = auth()
    for _ in range(6):
        await create(client, partner)
    auditor = auth(**AUDITOR)
    clean = await client.get("/v1/audit-events/verify", headers=auditor)
    assert clean.status_code == 200
    assert clean.json()["valid"] is True
    assert clean.json()["events_checked"] == 6
    assert clean.json()["first_invalid_seq"] is None
    checkpointed = await trail.all()

    for _ in range(3):
        await create(client, partner)
    # One of the events appended since that verification (all of them: after its checkpoints).
    target = [e for e in await trail.all() if e["seq"] > checkpointed[-1]["seq"]][1]
    await tamper(
        database_url,
        update(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.seq == target["seq"])
        .values(details={**target["details"], "outcome": "signpost"}),
    )
    tampered = await client.get("/v1/audit-events/verify", headers=auditor)
    assert tampered.status_code == 200
    body = tampered.json()
    assert body["valid"] is False
    assert body["first_invalid_seq"] == target["seq"]
    # The first verification's own event and the three referrals: nothing before them.
    assert body["events_checked"] == 4
    assert body["events_before_checkpoints"] == 6
    assert len(body["head_hash"]) == 64

    # The tampered chain's checkpoint did not move past the bad event: every later call sees it.
    again = await client.get("/v1/audit-events/verify", headers=auditor)
    assert (again.json()["valid"], again.json()["first_invalid_seq"]) == (False, target["seq"])


async def test_a_second_verify_checks_only_the_events_appended_since_the_first(
    client: httpx.AsyncClient, auth: Auth, trail: Trail
) -> None:
    partner, auditor = auth(), auth(**AUDITOR)
    for _ in range(5):
        await create(client, partner)

    first = (await client.get("/v1/audit-events/verify", headers=auditor)).json()
    assert (first["valid"], first["mode"], first["events_checked"]) == (True, "incremental", 5)
    assert (first["checkpoints"], first["events_before_checkpoints"]) == ([], 0)

    for _ in range(3):
        await create(client, partner)
    second = (await client.get("/v1/audit-events/verify", headers=auditor)).json()
    assert second["valid"] is True, second["problem"]
    # The three referrals and the first verification's own event; not the five before.
    assert second["events_checked"] == 4
    assert second["events_before_checkpoints"] == 5
    # It started each chain where the first one ended: at the heads the first one reported.
    assert second["checkpoints"] == [h for h in first["heads"] if h["chain_seq"] > 0]

    third = (await client.get("/v1/audit-events/verify", headers=auditor)).json()
    assert (third["valid"], third["events_checked"], third["events_before_checkpoints"]) == (
        True,
        1,
        9,
    )
    events = await trail.all()
    assert third["events_checked"] + third["events_before_checkpoints"] == len(events) - 1


async def test_concurrent_verifications_and_appends_stay_valid_and_checkpoints_only_advance(
    client: httpx.AsyncClient, auth: Auth, trail: Trail, app: FastAPI
) -> None:
    partner, auditor = auth(), auth(**AUDITOR)

    async def one(i: int) -> dict[str, Any]:
        if i % 3 == 0:
            response = await client.get("/v1/audit-events/verify", headers=auditor)
            assert response.status_code == 200, response.text
            verified: dict[str, Any] = response.json()
            return verified
        await create(client, partner)
        return {"valid": True}

    # A trail to verify before the race: with group commit (PostgreSQL) the racing appends may
    # all commit together after the verifications, and there would be nothing to checkpoint.
    for _ in range(3):
        await create(client, partner)
    results = await asyncio.gather(*(one(i) for i in range(30)))
    assert all(r["valid"] for r in results), [r.get("problem") for r in results]

    # Every checkpoint names an event exactly as stored: the one at its chain position.
    async with app.state.services.engine.connect() as conn:
        stored = (await conn.execute(select(AUDIT_CHECKPOINTS))).mappings().all()
    at = {(e["chain"], e["chain_seq"]): e for e in await trail.all()}
    assert stored
    for checkpoint in stored:
        event = at[(checkpoint["chain"], checkpoint["chain_seq"])]
        assert (event["seq"], event["hash"]) == (checkpoint["seq"], checkpoint["hash"])
    final = (await client.get("/v1/audit-events/verify", headers=auditor)).json()
    assert final["valid"] is True, final["problem"]
