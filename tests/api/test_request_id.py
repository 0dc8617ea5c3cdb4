"""X-Request-ID: echoed when sane, replaced when not, present on every response."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.factories import make_referral_body

SANE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("abc-123", id="simple"),
        pytest.param("3f2b7c1e-8d4a-4e5f-9a6b-0c1d2e3f4a5b", id="uuid"),
        pytest.param("gateway:req.42_a", id="punctuation"),
        pytest.param("x" * 64, id="64-chars"),
    ],
)
async def test_sane_request_id_is_echoed(client: httpx.AsyncClient, auth, sent: str) -> None:
    created = await client.post(
        "/v1/referrals", json=make_referral_body(), headers={**auth(), "X-Request-ID": sent}
    )
    assert created.status_code == 201
    assert created.headers["x-request-id"] == sent


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
async def test_insane_request_id_is_replaced(
    client: httpx.AsyncClient, auth, problem, sent: str
) -> None:
    response = await client.get("/v1/nothing-here", headers={**auth(), "X-Request-ID": sent})
    body = problem(response, 404)
    replaced = response.headers["x-request-id"]
    assert replaced != sent
    assert SANE.fullmatch(replaced)
    assert body["request_id"] == replaced
    if sent:
        assert sent not in response.text


async def test_generated_ids_differ_per_request(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/v1/pathway")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(SANE.fullmatch(i) for i in ids)


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient, auth) -> None:
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
        assert response.headers["x-request-id"] == sent, status
        if status >= 400:
            assert response.json()["request_id"] == sent, status
