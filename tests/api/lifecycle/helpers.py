"""Moving referrals through the HTTP API, for the lifecycle tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import make_referral_body

REFERRER = {"org": "RX1", "scopes": ("referrals:submit", "referrals:read")}
OTHER_REFERRER = {"org": "A81001", "scopes": ("referrals:submit", "referrals:read")}
TEAM = {"org": "PIT01", "scopes": ("referrals:triage",), "sub": "clinician-1"}
AUDITOR = {"org": "PIT01", "scopes": ("audit:read_all",)}

# Bodies that the move table accepts from the right status (the example referral is step_up).
CONFIRM = {"outcome": "step_up"}
STEP_DOWN = {"outcome": "step_down", "reason": {"code": "clinical_judgement"}}
SIGNPOST = {
    "outcome": "signpost",
    "reason": {"code": "additional_information"},
    "signposts": ["health_visiting"],
}
WITHDRAW = {"reason": {"code": "family_declined"}}
CLOSE = {"reason": {"code": "intervention_completed"}}
BODIES = {"triage": CONFIRM, "withdraw": WITHDRAW, "close": CLOSE}


async def submit(
    client: httpx.AsyncClient, auth: Any, who: dict[str, Any] = REFERRER, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/referrals", json=make_referral_body(**overrides), headers=auth(**who)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def act(
    client: httpx.AsyncClient,
    auth: Any,
    referral_id: str,
    action: str,
    body: dict[str, Any],
    *,
    version: int | str | None,
    who: dict[str, Any] = TEAM,
    key: str | None = None,
) -> httpx.Response:
    headers = auth(**who)
    if version is not None:
        headers["If-Match"] = version if isinstance(version, str) else f'W/"{version}"'
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(f"/v1/referrals/{referral_id}/{action}", json=body, headers=headers)


async def moved(
    client: httpx.AsyncClient,
    auth: Any,
    referral_id: str,
    action: str,
    body: dict[str, Any],
    version: int,
    who: dict[str, Any] = TEAM,
) -> dict[str, Any]:
    response = await act(client, auth, referral_id, action, body, version=version, who=who)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def referral_in(client: httpx.AsyncClient, auth: Any, status: str) -> dict[str, Any]:
    """A new referral brought to `status` through the API; returns its latest representation."""
    referral = await submit(client, auth)
    rid = referral["id"]
    if status == "awaiting_triage":
        return referral
    if status == "accepted":
        return await moved(client, auth, rid, "triage", CONFIRM, 1)
    if status == "stepped_down":
        return await moved(client, auth, rid, "triage", STEP_DOWN, 1)
    if status == "signposted":
        return await moved(client, auth, rid, "triage", SIGNPOST, 1)
    if status == "withdrawn":
        return await moved(client, auth, rid, "withdraw", WITHDRAW, 1)
    if status == "closed":
        await moved(client, auth, rid, "triage", CONFIRM, 1)
        return await moved(client, auth, rid, "close", CLOSE, 2)
    raise AssertionError(status)
