"""A body that repeats a key is refused whole (400 naming the key's path), and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from api.json_body import StrictJsonRoute
from api.routes import audit, eligibility, health, pathway, referrals
from tests.factories import make_referral_body

JSON = {"Content-Type": "application/json"}
BODY_PATHS = ("/v1/referrals", "/v1/eligibility/check")
# A value no error may echo (a phone number is personal data).
FIRST_PHONE = "07700 900999"


def with_repeat(value: Any, path: tuple[str | int, ...], first: Any) -> str:
    """`value` as JSON text, where the key at `path` is written twice: `first`, then its own
    value (which json.loads, keeping the last, would read)."""
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if path and key == path[0]:
                if len(path) == 1:
                    parts.append(f"{json.dumps(key)}: {json.dumps(first)}")
                    parts.append(f"{json.dumps(key)}: {json.dumps(item)}")
                else:
                    parts.append(f"{json.dumps(key)}: {with_repeat(item, path[1:], first)}")
            else:
                parts.append(f"{json.dumps(key)}: {json.dumps(item)}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list):
        return (
            "["
            + ", ".join(
                with_repeat(item, path[1:], first)
                if path and index == path[0]
                else json.dumps(item)
                for index, item in enumerate(value)
            )
            + "]"
        )
    return json.dumps(value)


def two_caregivers() -> dict[str, Any]:
    body = make_referral_body()
    second = {"given_name": "Sam", "family_name": "Example", "relationship": "father"}
    body["caregivers"].append({**second, "phone": "07700 900111"})
    return body


CASES = [
    # The finding: the first says immediate risk, the last (which json.loads keeps) says none.
    pytest.param(
        make_referral_body(), ("safeguarding", "immediate_risk"), True, id="immediate-risk"
    ),
    pytest.param(
        make_referral_body(), ("consent", "caregiver_consent"), False, id="consent-false-then-true"
    ),
    pytest.param(make_referral_body(), ("postcode",), "SW1A 1AA", id="top-level"),
    pytest.param(two_caregivers(), ("caregivers", 1, "phone"), FIRST_PHONE, id="inside-an-array"),
]


def test_the_helper_writes_the_key_twice() -> None:
    text = with_repeat({"a": {"b": 1}}, ("a", "b"), 2)
    assert text == '{"a": {"b": 2, "b": 1}}'
    assert json.loads(text) == {"a": {"b": 1}}  # what the standard library would have read


@pytest.mark.parametrize(("body", "path", "first"), CASES)
@pytest.mark.parametrize("url", BODY_PATHS)
async def test_a_repeated_key_is_400_naming_its_path(
    client: httpx.AsyncClient,
    auth,
    problem,
    url: str,
    body: dict[str, Any],
    path: tuple[str | int, ...],
    first: Any,
) -> None:
    content = with_repeat(body, path, first)
    response = await client.post(url, content=content, headers={**auth(), **JSON})

    refusal = problem(response, 400)
    assert refusal["type"].endswith("/problems/duplicate-key")
    expected = "".join(
        f"[{part}]" if isinstance(part, int) else (f".{part}" if index else part)
        for index, part in enumerate(path)
    )
    assert refusal["errors"] == [{"field": expected, "message": "is given more than once"}]
    assert FIRST_PHONE not in response.text and "07700 900111" not in response.text


async def test_every_repeat_is_named(client: httpx.AsyncClient, auth, problem) -> None:
    body = make_referral_body()
    text = with_repeat(body, ("postcode",), "SW1A 1AA")
    text = text.replace(
        '"immediate_risk": false', '"immediate_risk": true, "immediate_risk": false'
    )
    response = await client.post("/v1/referrals", content=text, headers={**auth(), **JSON})
    fields = {error["field"] for error in problem(response, 400)["errors"]}
    assert fields == {"postcode", "safeguarding.immediate_risk"}


async def test_nothing_is_stored_or_audited_for_a_refused_body(
    client: httpx.AsyncClient, auth
) -> None:
    for url in BODY_PATHS:
        content = with_repeat(make_referral_body(), ("safeguarding", "immediate_risk"), True)
        response = await client.post(url, content=content, headers={**auth(), **JSON})
        assert response.status_code == 400

    listed = await client.get("/v1/referrals", headers=auth())
    assert listed.status_code == 200 and listed.json()["items"] == []
    events = await client.get("/v1/audit-events", headers=auth(scopes=("audit:read",)))
    assert events.status_code == 200
    actions = {event["action"] for event in events.json()["items"]}
    assert not actions & {"referral.created", "eligibility.checked"}, actions


async def test_the_same_key_in_different_objects_is_fine(client: httpx.AsyncClient, auth) -> None:
    body = make_referral_body()  # given_name, family_name and phone appear in several objects
    response = await client.post(
        "/v1/referrals", content=json.dumps(body), headers={**auth(), **JSON}
    )
    assert response.status_code == 201, response.text


async def test_malformed_json_is_still_malformed_json(
    client: httpx.AsyncClient, auth, problem
) -> None:
    for url in BODY_PATHS:
        response = await client.post(url, content=b'{"a": 1, "a": ', headers={**auth(), **JSON})
        assert problem(response, 400)["type"].endswith("/problems/malformed-json")


def test_every_route_with_a_body_parses_it_strictly() -> None:
    # A router made without route_class=StrictJsonRoute would take repeated keys again.
    with_body = [
        route
        for module in (audit, eligibility, health, pathway, referrals)
        for route in module.router.routes
        if isinstance(route, APIRoute) and route.body_field is not None
    ]
    assert {route.path for route in with_body} >= {"/v1/referrals", "/v1/eligibility/check"}
    assert all(isinstance(route, StrictJsonRoute) for route in with_body)
