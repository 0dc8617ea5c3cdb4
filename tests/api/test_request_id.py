"""X-Request-ID is always the service's own id; a caller's sane X-Request-ID is kept apart as the
request's correlation id (X-Correlation-ID, logs, the audit event), and an insane one dropped."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from service.models import AUDIT_EVENTS
from tests.conftest import ALL_SCOPES
from tests.factories import make_referral_body

OURS = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("abc-123", id="simple"),
        pytest.param("3f2b7c1e-8d4a-4e5f-9a6b-0c1d2e3f4a5b", id="uuid"),
        pytest.param("gateway:req.42_a", id="punctuation"),
        pytest.param("x" * 64, id="64-chars"),
        # Even one that looks exactly like ours is only ever the caller's label.
        pytest.param("0123456789abcdef0123456789abcdef", id="looks-like-ours"),
    ],
)
async def test_a_sane_request_id_is_echoed_as_the_correlation_id_never_as_ours(
    client: httpx.AsyncClient, auth, sent: str
) -> None:
    created = await client.post(
        "/v1/referrals", json=make_referral_body(), headers={**auth(), "X-Request-ID": sent}
    )
    assert created.status_code == 201
    assert created.headers["x-correlation-id"] == sent
    assert OURS.fullmatch(created.headers["x-request-id"])
    assert created.headers["x-request-id"] != sent


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("r" * 200, id="200-chars"),
        pytest.param("x" * 65, id="65-chars"),
        pytest.param("has spaces in it", id="spaces"),
        pytest.param("<script>alert(1)</script>", id="markup"),
        pytest.param("id\tTab", id="tab"),
        pytest.param("", id="empty"),
    ],
)
async def test_an_insane_request_id_is_dropped(
    client: httpx.AsyncClient, auth, problem, sent: str
) -> None:
    response = await client.get("/v1/nothing-here", headers={**auth(), "X-Request-ID": sent})
    body = problem(response, 404)
    assert OURS.fullmatch(response.headers["x-request-id"])
    assert body["request_id"] == response.headers["x-request-id"]
    assert "x-correlation-id" not in response.headers
    if sent:
        assert sent not in response.text


async def test_generated_ids_differ_per_request_and_no_correlation_id_is_invented(
    client: httpx.AsyncClient,
) -> None:
    responses = [await client.get("/v1/pathway") for _ in range(3)]
    ids = {r.headers["x-request-id"] for r in responses}
    assert len(ids) == 3
    assert all(OURS.fullmatch(i) for i in ids)
    assert all("x-correlation-id" not in r.headers for r in responses)


async def test_every_response_carries_our_id_and_the_callers(
    client: httpx.AsyncClient, auth
) -> None:
    good = auth()
    as_json = {**good, "Content-Type": "application/json"}
    created = await client.post("/v1/referrals", json=make_referral_body(), headers=good)
    too_big = json.dumps({"description": "x" * 70_000}).encode()
    cases: dict[int, tuple[str, str, dict[str, Any]]] = {
        201: ("POST", "/v1/referrals", {"json": make_referral_body(), "headers": good}),
        200: ("GET", created.headers["location"], {"headers": good}),
        400: ("POST", "/v1/referrals", {"content": b"{", "headers": as_json}),
        401: ("GET", "/v1/referrals", {}),
        403: ("GET", "/v1/referrals", {"headers": auth(scopes=("referrals:submit",))}),
        404: ("GET", "/v1/nothing-here", {"headers": good}),
        405: ("DELETE", "/v1/pathway", {}),
        413: ("POST", "/v1/referrals", {"content": too_big, "headers": as_json}),
        415: (
            "POST",
            "/v1/referrals",
            {"content": b"{}", "headers": {**good, "Content-Type": "text/plain"}},
        ),
        422: ("POST", "/v1/referrals", {"json": {}, "headers": good}),
    }
    for status, (method, path, kwargs) in cases.items():
        sent = f"probe-{status}"
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": sent}
        response = await client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == status, (status, response.text)
        assert response.headers["x-correlation-id"] == sent, status
        ours = response.headers["x-request-id"]
        assert OURS.fullmatch(ours), status
        if status >= 400:
            assert response.json()["request_id"] == ours, status


async def test_another_organisations_request_id_cannot_label_an_audit_event_as_ours(
    client: httpx.AsyncClient, auth, app: FastAPI
) -> None:
    victim = await client.post("/v1/referrals", json=make_referral_body(), headers=auth(org="RX1"))
    assert victim.status_code == 201
    stolen = victim.headers["x-request-id"]

    forger = await client.post(
        "/v1/referrals",
        json=make_referral_body(),
        headers={**auth(org="RX2"), "X-Request-ID": stolen},
    )
    assert forger.status_code == 201
    assert forger.headers["x-request-id"] != stolen

    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq))).all()
    with_stolen_id = [r for r in rows if r.request_id == stolen]
    assert [(r.actor_org, r.correlation_id) for r in with_stolen_id] == [("RX1", None)]
    [forged] = [r for r in rows if r.actor_org == "RX2"]
    assert (forged.request_id, forged.correlation_id) == (forger.headers["x-request-id"], stolen)

    # The whole trail shows it for what it is: RX2's label on RX2's own request.
    page = await client.get("/v1/audit-events", headers=auth(org="AUD01", scopes=ALL_SCOPES))
    shown = {e["seq"]: e for e in page.json()["items"]}[forged.seq]
    assert (shown["request_id"], shown["correlation_id"]) == (forged.request_id, stolen)


async def test_an_organisation_sees_its_own_correlation_ids_and_not_the_teams(
    client: httpx.AsyncClient, auth
) -> None:
    partner = auth(org="RX1", scopes=("referrals:submit", "referrals:read", "audit:read"))
    created = await client.post(
        "/v1/referrals", json=make_referral_body(), headers={**partner, "X-Request-ID": "rx1-77"}
    )
    assert created.status_code == 201
    team = auth(org="PIT01", scopes=("referrals:triage",))
    read = await client.get(
        created.headers["location"], headers={**team, "X-Request-ID": "team-internal-5"}
    )
    assert read.status_code == 200

    page = await client.get("/v1/audit-events", headers=partner)
    by_org = {e["actor"]["org"]: e for e in page.json()["items"]}
    assert by_org["RX1"]["correlation_id"] == "rx1-77"
    assert "correlation_id" not in by_org["PIT01"]
    assert "team-internal-5" not in page.text
