"""415 for a body that is not JSON, on every route that takes one, and in the same place among
the other checks: after the body has been read (so its size limit still applies first) and
before the token, the parameters or the content are looked at."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
from fastapi.routing import APIRoute

from api.routes import audit, eligibility, health, lifecycle, pathway, referrals, webhooks
from tests.factories import make_referral_body

TEXT = {"Content-Type": "text/plain"}


def _routes_with_a_body() -> list[tuple[str, str]]:
    """(method, a concrete path) for each route that takes a body; ids made up."""
    found = []
    modules = (audit, eligibility, health, lifecycle, pathway, referrals, webhooks)
    for route in (route for module in modules for route in module.router.routes):
        if isinstance(route, APIRoute) and route.body_field is not None:
            path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
            found.extend((method, path) for method in sorted(route.methods))
    return found


async def test_every_route_with_a_body_refuses_text_before_the_token(
    client: httpx.AsyncClient, problem
) -> None:
    routes = _routes_with_a_body()
    assert len(routes) >= 6, routes  # intake, eligibility, three actions, a subscription
    for method, path in routes:
        # No token at all: 415 still comes first, as the first check on these routes.
        response = await client.request(method, path, content=b"{}", headers=TEXT)
        assert problem(response, 415)["detail"] == "Send the body as application/json.", path


async def test_a_body_without_a_media_type_is_415(client: httpx.AsyncClient, auth, problem) -> None:
    response = await client.post("/v1/referrals", content=b"{}", headers=auth())
    problem(response, 415)


async def test_json_media_types_are_not_415(client: httpx.AsyncClient, auth) -> None:
    for media_type in (
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/merge-patch+json",
    ):
        response = await client.post(
            "/v1/referrals",
            json=make_referral_body(),
            headers={**auth(), "Content-Type": media_type},
        )
        assert response.status_code == 201, (media_type, response.text)


async def test_a_streamed_text_body_over_the_limit_is_413_not_415(
    client: httpx.AsyncClient, auth, problem
) -> None:
    # The body is read (and its size limit enforced) before its media type is judged.
    async def too_long() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 64 * 1024

    response = await client.post("/v1/referrals", content=too_long(), headers={**auth(), **TEXT})
    problem(response, 413)


async def test_a_route_without_a_body_ignores_the_media_type(
    client: httpx.AsyncClient, auth
) -> None:
    response = await client.get("/v1/referrals", headers={**auth(), **TEXT})
    assert response.status_code == 200, response.text
