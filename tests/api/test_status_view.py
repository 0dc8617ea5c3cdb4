"""The status view shows the stored decision's safeguarding alert, next steps and signposts
(or, after triage, the clinician's signposts) exactly as the whole referral does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.lifecycle.helpers import SIGNPOST, moved, submit


async def _status(client: httpx.AsyncClient, auth: Any, referral_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/referrals/{referral_id}/status", headers=auth())
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="step-up"),
        pytest.param(
            {"safeguarding__immediate_risk": True, "referrer_urgency": "urgent"},
            id="safeguarding-alert",
        ),
    ],
)
async def test_status_shows_the_rules_decision(
    client: httpx.AsyncClient, auth, overrides: dict[str, Any]
) -> None:
    referral = await submit(client, auth, **overrides)
    decision = referral["decision"]
    view = await _status(client, auth, referral["id"])
    assert view["safeguarding_alert"] is decision["safeguarding_alert"]
    assert view["next_steps"] == decision["next_steps"] and view["next_steps"]
    assert view["signposts"] == decision["signposts"]
    assert (view["outcome"], view["priority"]) == (decision["outcome"], decision["priority"])
    if overrides:
        assert view["safeguarding_alert"] is True


async def test_after_triage_the_clinicians_signposts_replace_the_rules(
    client: httpx.AsyncClient, auth
) -> None:
    referral = await submit(client, auth)
    triaged = await moved(client, auth, referral["id"], "triage", SIGNPOST, version=1)
    view = await _status(client, auth, referral["id"])
    assert [s["id"] for s in view["signposts"]] == SIGNPOST["signposts"]
    assert view["signposts"] == triaged["triage"]["signposts"]
    assert view["next_steps"] == referral["decision"]["next_steps"]
