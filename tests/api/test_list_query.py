"""The list's query parameters, read as one model: each error still names its parameter by its
public name, and parameters the list does not know are ignored, as they always were."""

from __future__ import annotations

import httpx

from tests.api.lifecycle.helpers import submit


async def test_every_bad_parameter_is_named_by_its_public_name(
    client: httpx.AsyncClient, auth, problem
) -> None:
    response = await client.get(
        "/v1/referrals",
        params={"status": "bogus", "outcome": "bogus", "limit": 0, "sort": "bogus"},
        headers=auth(),
    )
    body = problem(response, 422, fields=("status", "outcome", "limit", "sort"))
    assert [e["field"] for e in body["errors"]] == ["status", "outcome", "limit", "sort"]


async def test_unknown_parameters_are_ignored(client: httpx.AsyncClient, auth) -> None:
    referral = await submit(client, auth)
    # `status_` is the model's own field name: not a public name, so not a filter either.
    params = {"unknown": "1", "status_": "closed", "limit": "5"}
    response = await client.get("/v1/referrals", params=params, headers=auth())
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [referral["id"]]


async def test_the_parameters_reach_the_query(client: httpx.AsyncClient, auth) -> None:
    first = await submit(client, auth)
    second = await submit(client, auth)
    page = await client.get("/v1/referrals", params={"limit": 1}, headers=auth())
    assert [item["id"] for item in page.json()["items"]] == [second["id"]]
    cursor = page.json()["next_cursor"]
    rest = await client.get("/v1/referrals", params={"cursor": cursor}, headers=auth())
    assert [item["id"] for item in rest.json()["items"]] == [first["id"]]
    none = await client.get("/v1/referrals", params={"status": "closed"}, headers=auth())
    assert none.json()["items"] == []
