"""Whose audit events a reader sees: `audit:read` its organisation's, `audit:read_all` all.

An organisation's view must not reopen the existence oracle that the 404 closes: its refused
look-ups of another organisation's referral and of a missing id read back alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.api.test_audit_events import Trail, all_events_via_api, create, recompute_hash
from tests.factories import make_referral_body

Auth = Callable[..., dict[str, str]]

ORG_A, ORG_B, ORG_C, TEAM = "RX1", "RX2", "RX3", "PIT01"
GOVERNANCE = {"org": TEAM, "sub": "ig-officer-1", "scopes": ("audit:read_all",)}


def org_auditor(org: str) -> dict[str, Any]:
    return {"org": org, "sub": f"auditor-{org}", "scopes": ("audit:read",)}


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    page = await client.get("/v1/audit-events", params={"limit": 100, **params}, headers=headers)
    assert page.status_code == 200, page.text
    assert page.json()["next_cursor"] is None, "these tests expect one page"
    items: list[dict[str, Any]] = page.json()["items"]
    return items


@pytest.fixture
def trail(app: Any) -> Trail:
    return Trail(app)


# --- who sees what -------------------------------------------------------------------------------


async def test_another_organisations_auditor_sees_none_of_its_events(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    partner_a = auth(org=ORG_A, sub="hv-system-a")
    referral = await create(client, partner_a)
    assert (await client.get(f"/v1/referrals/{referral}", headers=partner_a)).is_success
    assert (await client.get(f"/v1/referrals/{referral}/status", headers=partner_a)).is_success
    assert (await client.get("/v1/referrals", headers=partner_a)).is_success
    checked = await client.post(
        "/v1/eligibility/check", json=make_referral_body(), headers=partner_a
    )
    assert checked.status_code == 200
    since = datetime(2000, 1, 1, tzinfo=UTC).isoformat()

    auditor_b = auth(**org_auditor(ORG_B))
    assert await listed(client, auditor_b) == []
    assert await listed(client, auditor_b, referral_id=referral) == []
    for action in ("referral.created", "referral.read", "referral.listed", "eligibility.checked"):
        assert await listed(client, auditor_b, action=action) == [], action
    # Only its own reading of the trail, from here on.
    later = await listed(client, auditor_b, since=since)
    assert {(e["actor"]["org"], e["action"]) for e in later} == {(ORG_B, "audit.read")}

    # The same reading by the organisation itself finds them: the filters do select something.
    auditor_a = auth(**org_auditor(ORG_A))
    about = await listed(client, auditor_a, referral_id=referral)
    assert [e["action"] for e in about] == [
        "referral.created",
        "referral.read",
        "referral.status_read",
    ]
    assert [e["action"] for e in await listed(client, auditor_a, action="referral.listed")] == [
        "referral.listed"
    ]


async def test_an_organisation_sees_its_own_actors_and_the_team_on_its_referrals(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    partner_a = auth(org=ORG_A, sub="hv-system-a")
    partner_c = auth(org=ORG_C, sub="gp-system-c")
    mine = await create(client, partner_a)
    theirs = await create(client, partner_c)
    assert (await client.get("/v1/referrals", headers=partner_a)).is_success
    triage = auth(org=TEAM, sub="triage-1", scopes=("referrals:triage",))
    assert (await client.get(f"/v1/referrals/{mine}", headers=triage)).is_success
    assert (await client.get(f"/v1/referrals/{theirs}", headers=triage)).is_success
    assert (await client.get(f"/v1/referrals/{theirs}/status", headers=partner_c)).is_success
    # Another organisation's refused look-up of A's referral is about A's referral.
    prober = auth(org=ORG_B, sub="gp-system-b")
    assert (await client.get(f"/v1/referrals/{mine}", headers=prober)).status_code == 404

    seen = await listed(client, auth(**org_auditor(ORG_A)))
    shown = [(e["actor"]["org"], e["action"], e["outcome"], e["resource_id"]) for e in seen]
    assert shown == [
        (ORG_A, "referral.created", "success", mine),
        (ORG_A, "referral.listed", "success", None),
        (TEAM, "referral.read", "success", mine),
        (ORG_B, "access.denied", "denied", mine),
    ]
    assert seen[-1]["details"] == {"attempted": "referral.read", "reason": "other_organisation"}
    assert all(e["hash"] is None and e["prev_hash"] is None for e in seen)

    # Nothing of C's referral, though the team's actor read it too.
    text = (await client.get("/v1/audit-events", headers=auth(**org_auditor(ORG_A)))).text
    assert theirs not in text


async def test_the_organisation_view_pages_with_its_cursor(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    partner_a, partner_c = auth(org=ORG_A), auth(org=ORG_C)
    for _ in range(4):
        await create(client, partner_a)
        await create(client, partner_c)
    auditor_a = auth(**org_auditor(ORG_A))
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/v1/audit-events", params=params, headers=auditor_a)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    created = [e for e in seen if e["action"] == "referral.created"]
    assert len(created) == 4
    assert {e["actor"]["org"] for e in seen} == {ORG_A}
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(set(seqs))


# --- the existence oracle ------------------------------------------------------------------------

# What may differ between two events whatever they record: position, time, ids.
PER_EVENT = {"seq", "chain", "chain_seq", "occurred_at", "request_id", "resource_id"}


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in PER_EVENT}


@pytest.mark.parametrize(
    "suffix, attempted", [("", "referral.read"), ("/status", "referral.status_read")]
)
async def test_an_organisation_cannot_tell_its_probes_apart_in_its_own_view(
    client: httpx.AsyncClient, auth: Auth, trail: Trail, suffix: str, attempted: str
) -> None:
    existing = await create(client, auth(org=ORG_A))
    missing = str(uuid.uuid4())
    prober = auth(org=ORG_B, sub="gp-system-b")
    for referral_id in (missing, existing):
        response = await client.get(f"/v1/referrals/{referral_id}{suffix}", headers=prober)
        assert response.status_code == 404
    probes = {missing, existing}

    auditor_b = auth(**org_auditor(ORG_B))
    first = [e for e in await listed(client, auditor_b) if e["resource_id"] in probes]
    assert [e["resource_id"] for e in first] == [missing, existing]
    assert comparable(first[0]) == comparable(first[1])
    assert comparable(first[0]) == {
        "actor": {"sub": "gp-system-b", "org": ORG_B},
        "action": attempted,
        "resource_type": "referral",
        "outcome": "not_found",
        "details": {},
        "prev_hash": None,
        "hash": None,
    }

    # Every filter finds both or neither.
    for action in ("access.denied", "referral.read", "referral.status_read"):
        found = {e["resource_id"] for e in await listed(client, auditor_b, action=action)}
        assert found & probes in (set(), probes), action
        assert (found & probes == probes) == (action == attempted), action
    one = await listed(client, auditor_b, referral_id=missing)
    other = await listed(client, auditor_b, referral_id=existing)
    assert len(one) == len(other) == 1
    assert comparable(one[0]) == comparable(other[0])
    since = datetime(2000, 1, 1, tzinfo=UTC).isoformat()
    in_since = [
        e for e in await listed(client, auditor_b, since=since) if e["resource_type"] == "referral"
    ]
    assert [e["resource_id"] for e in in_since] == [missing, existing]

    # No stored hash reaches this view: not the probes', nor any later one that chains them.
    shown = (await client.get("/v1/audit-events", params={"limit": 100}, headers=auditor_b)).text
    stored = await trail.all()
    assert len(stored) > 2
    assert [e["hash"] for e in stored if e["hash"] in shown] == []
    assert [e["prev_hash"] for e in stored if e["prev_hash"] in shown] == []

    # The team's information governance sees which it was, as stored and hashed.
    whole = {
        e["resource_id"]: e
        for e in await all_events_via_api(client, auth(**GOVERNANCE))
        if e["resource_type"] == "referral" and e["resource_id"] in probes
    }
    assert (whole[existing]["action"], whole[existing]["outcome"]) == ("access.denied", "denied")
    assert whole[existing]["details"] == {"attempted": attempted, "reason": "other_organisation"}
    assert (whole[missing]["action"], whole[missing]["outcome"]) == (attempted, "not_found")
    assert whole[missing]["details"] == {}
    by_seq = {e["seq"]: e for e in stored}
    for event in whole.values():
        assert event["hash"] == by_seq[event["seq"]]["hash"]
        assert recompute_hash(event) == event["hash"]


# --- verifying is the whole trail's business -----------------------------------------------------


async def test_only_audit_read_all_may_verify(
    client: httpx.AsyncClient, auth: Auth, problem: Callable[..., dict[str, Any]]
) -> None:
    await create(client, auth(org=ORG_A))
    refused = await client.get("/v1/audit-events/verify", headers=auth(**org_auditor(ORG_A)))
    problem(refused, 403)
    assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'

    verified = await client.get("/v1/audit-events/verify", headers=auth(**GOVERNANCE))
    assert verified.status_code == 200, verified.text
    assert verified.json()["valid"] is True
    # The refusal above is an event too (access.denied), and was checked.
    assert verified.json()["events_checked"] == 2
