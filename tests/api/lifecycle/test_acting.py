"""The rules of acting: If-Match, scopes, organisations, reasons, signposts, replays."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.lifecycle.helpers import (
    AUDITOR,
    CONFIRM,
    OTHER_REFERRER,
    REFERRER,
    SIGNPOST,
    TEAM,
    WITHDRAW,
    act,
    moved,
    submit,
)

ACTIONS = [("triage", CONFIRM), ("withdraw", WITHDRAW), ("close", {"reason": {"code": "other"}})]


async def audit_events(client: httpx.AsyncClient, auth: Any, referral_id: str) -> list[dict]:
    response = await client.get(
        "/v1/audit-events",
        params={"referral_id": referral_id, "limit": 100},
        headers=auth(**AUDITOR),
    )
    assert response.status_code == 200, response.text
    events: list[dict] = response.json()["items"]
    return events


@pytest.mark.parametrize(("action", "body"), ACTIONS, ids=[a for a, _ in ACTIONS])
async def test_without_if_match_an_action_is_428_and_audited(
    client: httpx.AsyncClient, auth: Any, problem: Any, action: str, body: dict
) -> None:
    referral = await submit(client, auth)
    response = await act(client, auth, referral["id"], action, body, version=None)
    assert problem(response, 428)["type"].endswith("/precondition-required")
    refusals = [
        e for e in await audit_events(client, auth, referral["id"]) if e["outcome"] == "refused"
    ]
    assert [e["details"]["reason"] for e in refusals] == ["precondition_required"]


@pytest.mark.parametrize("sent", ['W/"7"', '"7"', "garbage", "*", 'W/"1", W/"2"'])
async def test_a_stale_or_unreadable_if_match_is_412_with_the_current_version(
    client: httpx.AsyncClient, auth: Any, problem: Any, sent: str
) -> None:
    referral = await submit(client, auth)
    response = await act(client, auth, referral["id"], "triage", CONFIRM, version=sent)
    refused = problem(response, 412)
    assert refused["type"].endswith("/stale-version")
    assert refused["current_version"] == 1
    assert response.headers["etag"] == 'W/"1"'


async def test_the_etag_of_a_read_is_what_if_match_sends(
    client: httpx.AsyncClient, auth: Any
) -> None:
    referral = await submit(client, auth)
    read = await client.get(f"/v1/referrals/{referral['id']}", headers=auth(**TEAM))
    status = await client.get(f"/v1/referrals/{referral['id']}/status", headers=auth(**TEAM))
    assert read.headers["etag"] == status.headers["etag"] == 'W/"1"'
    response = await act(
        client, auth, referral["id"], "triage", CONFIRM, version=read.headers["etag"]
    )
    assert response.status_code == 200, response.text
    stale = await act(
        client, auth, referral["id"], "withdraw", WITHDRAW, version=read.headers["etag"]
    )
    assert stale.status_code == 412


@pytest.mark.parametrize(("action", "body"), ACTIONS, ids=[a for a, _ in ACTIONS])
async def test_another_organisations_referral_is_404_for_every_action(
    client: httpx.AsyncClient, auth: Any, problem: Any, action: str, body: dict
) -> None:
    referral = await submit(client, auth)
    other = {**OTHER_REFERRER, "scopes": ("referrals:submit", "referrals:read")}
    if action != "withdraw":
        other = {**other, "scopes": ("referrals:submit",)}
    response = await act(client, auth, referral["id"], action, body, version=1, who=other)
    missing = await act(client, auth, str(uuid.uuid4()), action, body, version=1, who=other)
    if action == "withdraw":
        problem(response, 404)
        problem(missing, 404)
        assert response.json()["detail"] == missing.json()["detail"]
    else:
        # Triage and close need the team's scope: refused before any referral is looked up.
        problem(response, 403)
        problem(missing, 403)
    history = await client.get(
        f"/v1/referrals/{referral['id']}/history", headers=auth(**OTHER_REFERRER)
    )
    problem(history, 404)


async def test_a_referrer_cannot_triage_or_close(
    client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    referral = await submit(client, auth)
    problem(
        await act(client, auth, referral["id"], "triage", CONFIRM, version=1, who=REFERRER), 403
    )
    problem(
        await act(
            client,
            auth,
            referral["id"],
            "close",
            {"reason": {"code": "other"}},
            version=1,
            who=REFERRER,
        ),
        403,
    )


async def test_the_team_acts_on_any_organisations_referral(
    client: httpx.AsyncClient, auth: Any
) -> None:
    referral = await submit(client, auth, who=OTHER_REFERRER)
    after = await moved(client, auth, referral["id"], "triage", CONFIRM, 1)
    assert after["status"] == "accepted" and after["organisation"] == "A81001"


async def test_an_override_needs_a_reason(
    client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    referral = await submit(client, auth)
    for body in ({"outcome": "step_down"}, {"outcome": "step_up", "priority": "urgent"}):
        response = await act(client, auth, referral["id"], "triage", body, version=1)
        problem(response, 422, fields=("reason",))


async def test_an_unknown_reason_code_is_422(
    client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    referral = await submit(client, auth)
    bad = {"outcome": "step_down", "reason": {"code": "because_i_said_so"}}
    problem(
        await act(client, auth, referral["id"], "triage", bad, version=1),
        422,
        fields=("reason.code",),
    )
    # A withdrawal code is not a triage code.
    wrong_list = {"outcome": "step_down", "reason": {"code": "family_declined"}}
    problem(
        await act(client, auth, referral["id"], "triage", wrong_list, version=1),
        422,
        fields=("reason.code",),
    )
    problem(
        await act(
            client,
            auth,
            referral["id"],
            "withdraw",
            {"reason": {"code": "clinical_judgement"}},
            version=1,
            who=REFERRER,
        ),
        422,
        fields=("reason.code",),
    )


async def test_signposting_needs_known_services(
    client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    referral = await submit(client, auth)
    none = {**SIGNPOST, "signposts": []}
    problem(
        await act(client, auth, referral["id"], "triage", none, version=1),
        422,
        fields=("signposts",),
    )
    unknown = {**SIGNPOST, "signposts": ["health_visiting", "no_such_service"]}
    problem(
        await act(client, auth, referral["id"], "triage", unknown, version=1),
        422,
        fields=("signposts[1]",),
    )
    after = await moved(client, auth, referral["id"], "triage", SIGNPOST, 1)
    assert [s["id"] for s in after["triage"]["signposts"]] == ["health_visiting"]


async def test_a_withdrawal_needs_a_reason(
    client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    referral = await submit(client, auth)
    problem(
        await act(client, auth, referral["id"], "withdraw", {}, version=1, who=REFERRER),
        422,
        fields=("reason",),
    )


async def test_a_replayed_action_returns_its_first_response_after_the_version_moved(
    client: httpx.AsyncClient, auth: Any
) -> None:
    referral = await submit(client, auth)
    first = await act(client, auth, referral["id"], "triage", CONFIRM, version=1, key="t-1")
    assert first.status_code == 200, first.text
    closed = await moved(client, auth, referral["id"], "close", {"reason": {"code": "other"}}, 2)
    assert closed["status"] == "closed"
    again = await act(client, auth, referral["id"], "triage", CONFIRM, version=1, key="t-1")
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["status"] == "accepted"
    assert again.json()["version"] == 2
    assert again.json()["triage"] == first.json()["triage"]
    history = await client.get(f"/v1/referrals/{referral['id']}/history", headers=auth(**TEAM))
    assert [line["action"] for line in history.json()] == ["intake", "triage", "close"]


async def test_the_same_key_with_another_body_or_referral_is_422(
    client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    one, two = await submit(client, auth), await submit(client, auth)
    assert (
        await act(client, auth, one["id"], "triage", CONFIRM, version=1, key="k")
    ).status_code == 200
    problem(
        await act(client, auth, two["id"], "triage", CONFIRM, version=1, key="k"),
        422,
        fields=("Idempotency-Key",),
    )
