"""The main path end to end: submit, read back, status, list."""

from __future__ import annotations

import httpx

from tests.factories import make_referral_body


async def test_submitted_referral_reads_back_with_its_decision(
    client: httpx.AsyncClient, auth
) -> None:
    created = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    assert created.status_code == 201, created.text
    referral = created.json()
    assert created.headers["location"] == f"/v1/referrals/{referral['id']}"
    assert referral["status"] == "awaiting_triage"
    assert referral["decision"]["outcome"] == "step_up"
    assert referral["decision"]["provisional"] is True

    read = await client.get(created.headers["location"], headers=auth())
    assert read.status_code == 200
    assert read.json() == referral

    status = await client.get(f"/v1/referrals/{referral['id']}/status", headers=auth())
    assert status.json()["outcome"] == "step_up"

    listed = await client.get("/v1/referrals", headers=auth())
    assert [item["id"] for item in listed.json()["items"]] == [referral["id"]]
