"""Every row of the move table, and every move not in it, through the HTTP API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.lifecycle.helpers import (
    CLOSE,
    CONFIRM,
    REFERRER,
    SIGNPOST,
    STEP_DOWN,
    TEAM,
    WITHDRAW,
    act,
    referral_in,
)

STATUSES = ["awaiting_triage", "accepted", "stepped_down", "signposted", "withdrawn", "closed"]
# (action name, body, outcome for triage) -> expected target, per source status: lifecycle.md.
ATTEMPTS: dict[str, tuple[str, dict[str, Any]]] = {
    "triage step_up": ("triage", CONFIRM),
    "triage step_down": ("triage", STEP_DOWN),
    "triage signpost": ("triage", SIGNPOST),
    "withdraw": ("withdraw", WITHDRAW),
    "close": ("close", CLOSE),
}
LEGAL = {
    ("awaiting_triage", "triage step_up"): "accepted",
    ("awaiting_triage", "triage step_down"): "stepped_down",
    ("awaiting_triage", "triage signpost"): "signposted",
    ("stepped_down", "triage step_up"): "accepted",
    ("awaiting_triage", "withdraw"): "withdrawn",
    ("accepted", "withdraw"): "withdrawn",
    ("stepped_down", "withdraw"): "withdrawn",
    ("accepted", "close"): "closed",
    ("stepped_down", "close"): "closed",
}
# What the team may do from each status (the table's actions; [] when final).
TEAM_ACTIONS = {
    "awaiting_triage": ["triage", "withdraw"],
    "accepted": ["withdraw", "close"],
    "stepped_down": ["triage", "withdraw", "close"],
    "signposted": [],
    "withdrawn": [],
    "closed": [],
}
CASES = [(source, attempt) for source in STATUSES for attempt in ATTEMPTS]


@pytest.mark.parametrize(("source", "attempt"), CASES, ids=[f"{s}-{a}" for s, a in CASES])
async def test_the_move_table(
    client: httpx.AsyncClient, auth: Any, problem: Any, source: str, attempt: str
) -> None:
    referral = await referral_in(client, auth, source)
    action, body = ATTEMPTS[attempt]
    version = referral["version"]
    response = await act(client, auth, referral["id"], action, body, version=version)

    if (source, attempt) in LEGAL:
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["status"] == LEGAL[(source, attempt)]
        assert after["version"] == version + 1
        assert response.headers["etag"] == f'W/"{version + 1}"'
    else:
        refused = problem(response, 409)
        assert refused["type"].endswith("/illegal-transition")
        assert refused["current_status"] == source
        assert refused["allowed_actions"] == TEAM_ACTIONS[source]
        again = await client.get(f"/v1/referrals/{referral['id']}", headers=auth(**TEAM))
        assert again.json()["status"] == source and again.json()["version"] == version


async def test_a_referrer_withdraws_its_own_referral(client: httpx.AsyncClient, auth: Any) -> None:
    referral = await referral_in(client, auth, "awaiting_triage")
    assert referral["available_actions"] == ["withdraw"]
    response = await act(
        client, auth, referral["id"], "withdraw", WITHDRAW, version=1, who=REFERRER
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "withdrawn"
    assert response.json()["available_actions"] == []
    assert response.json()["withdrawal"]["reason"] == {"code": "family_declined", "comment": None}
    assert response.json()["withdrawal"]["by"]["org"] == "RX1"
