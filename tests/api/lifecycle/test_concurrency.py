"""Two clinicians triage one referral at once, through two service instances on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from api.app import create_app
from tests.api.lifecycle.helpers import AUDITOR, TEAM, submit
from tests.conftest import make_settings


@pytest.mark.postgres_only
async def test_exactly_one_of_two_concurrent_triages_wins(
    client: httpx.AsyncClient, auth: Any, database_url: str, signing_key: Any
) -> None:
    referral = await submit(client, auth)
    rid = referral["id"]
    other = create_app(make_settings(database_url, signing_key.public_file))
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as second:
            bodies = [
                {"outcome": "step_up"},
                {"outcome": "step_down", "reason": {"code": "clinical_judgement"}},
            ]
            headers = {**auth(**TEAM), "If-Match": 'W/"1"'}
            results = await asyncio.gather(
                client.post(f"/v1/referrals/{rid}/triage", json=bodies[0], headers=headers),
                second.post(f"/v1/referrals/{rid}/triage", json=bodies[1], headers=headers),
            )
            assert sorted(r.status_code for r in results) == [200, 412], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 412)
    assert loser.json()["current_version"] == 2
    history = await client.get(f"/v1/referrals/{rid}/history", headers=auth(**TEAM))
    assert [line["action"] for line in history.json()] == ["intake", "triage"]
    events = await client.get(
        "/v1/audit-events",
        params={"referral_id": rid, "action": "referral.triaged"},
        headers=auth(**AUDITOR),
    )
    assert sorted(e["outcome"] for e in events.json()["items"]) == ["refused", "success"]
