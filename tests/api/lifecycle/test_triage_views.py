"""After triage: both decisions visible, the clinician's drives status and lists; comments stay
in the whole referral only; history without personal data."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from tests.api.lifecycle.helpers import AUDITOR, REFERRER, TEAM, act, moved, submit

COMMENT = "Zebediah-Quillfeather said the grandmother Eudora shouts at the baby"


async def test_a_triage_keeps_the_rules_decision_and_adds_its_own(
    client: httpx.AsyncClient, auth: Any
) -> None:
    referral = await submit(client, auth)
    rules = referral["decision"]
    assert referral["provisional"] is True and referral["triage"] is None
    body = {
        "outcome": "step_down",
        "priority": "urgent",
        "reason": {"code": "family_circumstances", "comment": COMMENT},
    }
    after = await moved(client, auth, referral["id"], "triage", body, 1)
    assert after["decision"] == rules  # never changed
    assert after["provisional"] is False
    triage = after["triage"]
    assert (triage["outcome"], triage["priority"]) == ("step_down", "urgent")
    assert triage["agrees_with_rules"] is False
    assert triage["decided_by"] == {"sub": "clinician-1", "org": "PIT01"}
    assert triage["reason"] == {"code": "family_circumstances", "comment": COMMENT}

    status = await client.get(f"/v1/referrals/{referral['id']}/status", headers=auth())
    assert status.status_code == 200
    view = status.json()
    assert (view["status"], view["outcome"], view["priority"]) == (
        "stepped_down",
        "step_down",
        "urgent",
    )
    assert view["provisional"] is False
    assert view["version"] == 2
    assert view["triaged_at"] == triage["decided_at"]
    assert view["available_actions"] == ["withdraw"]  # the referrer's buttons
    listed = await client.get("/v1/referrals", headers=auth())
    item = listed.json()["items"][0]
    assert (item["status"], item["outcome"], item["priority"], item["version"]) == (
        "stepped_down",
        "step_down",
        "urgent",
        2,
    )


async def test_confirming_the_rules_needs_no_reason_and_agrees(
    client: httpx.AsyncClient, auth: Any
) -> None:
    referral = await submit(client, auth)
    after = await moved(client, auth, referral["id"], "triage", {"outcome": "step_up"}, 1)
    assert after["triage"]["agrees_with_rules"] is True
    assert after["triage"]["priority"] == referral["decision"]["priority"]
    assert after["triage"]["reason"] is None


async def test_a_comment_never_leaves_the_whole_referral(
    client: httpx.AsyncClient, auth: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # what the service logs at (service/core/logs.py)
    referral = await submit(client, auth)
    rid = referral["id"]
    body = {"outcome": "step_down", "reason": {"code": "clinical_judgement", "comment": COMMENT}}
    await moved(client, auth, rid, "triage", body, 1)
    withdraw = {"reason": {"code": "other", "comment": COMMENT}}
    whole = await moved(client, auth, rid, "withdraw", withdraw, 2, who=REFERRER)
    assert COMMENT in json.dumps(whole)  # the whole referral shows it to those who may read it

    seen = [
        await client.get(f"/v1/referrals/{rid}/status", headers=auth()),
        await client.get(f"/v1/referrals/{rid}/history", headers=auth()),
        await client.get("/v1/referrals", headers=auth()),
        await client.get("/v1/referrals", params={"sort": "triage"}, headers=auth(**TEAM)),
        await client.get("/v1/audit-events", params={"limit": 100}, headers=auth(**AUDITOR)),
    ]
    for response in seen:
        assert response.status_code == 200, response.text
        assert "Zebediah" not in response.text and "Eudora" not in response.text
    assert "Zebediah" not in caplog.text and "Eudora" not in caplog.text


async def test_history_lists_every_move_intake_first_without_personal_data(
    client: httpx.AsyncClient, auth: Any
) -> None:
    referral = await submit(client, auth, infant__family_name="Distinctivename")
    rid = referral["id"]
    await moved(
        client,
        auth,
        rid,
        "triage",
        {"outcome": "step_down", "reason": {"code": "clinical_judgement"}},
        1,
    )
    await moved(
        client,
        auth,
        rid,
        "triage",
        {"outcome": "step_up", "reason": {"code": "additional_information"}},
        2,
    )
    await moved(client, auth, rid, "close", {"reason": {"code": "intervention_completed"}}, 3)
    response = await client.get(f"/v1/referrals/{rid}/history", headers=auth())
    assert response.status_code == 200
    lines = response.json()
    assert [(x["action"], x["status"], x["by_org"], x["reason_code"]) for x in lines] == [
        ("intake", "awaiting_triage", "RX1", None),
        ("triage", "stepped_down", "PIT01", "clinical_judgement"),
        ("triage", "accepted", "PIT01", "additional_information"),
        ("close", "closed", "PIT01", "intervention_completed"),
    ]
    assert all(set(x) == {"status", "action", "at", "by_org", "reason_code"} for x in lines)
    assert "clinician-1" not in response.text and "Distinctivename" not in response.text


async def test_every_move_is_audited_with_from_to_reason_and_version(
    client: httpx.AsyncClient, auth: Any
) -> None:
    referral = await submit(client, auth)
    rid = referral["id"]
    await moved(client, auth, rid, "triage", {"outcome": "step_up"}, 1)
    stale = await act(client, auth, rid, "close", {"reason": {"code": "other"}}, version=1)
    assert stale.status_code == 412
    await moved(client, auth, rid, "close", {"reason": {"code": "other"}}, 2)
    events = await client.get(
        "/v1/audit-events", params={"referral_id": rid}, headers=auth(**AUDITOR)
    )
    moves = [
        (e["action"], e["outcome"])
        for e in events.json()["items"]
        if e["action"] in ("referral.triaged", "referral.closed")
    ]
    assert moves == [
        ("referral.triaged", "success"),
        ("referral.closed", "refused"),
        ("referral.closed", "success"),
    ]
    triaged = next(e for e in events.json()["items"] if e["action"] == "referral.triaged")
    assert triaged["details"] == {
        "from_status": "awaiting_triage",
        "to_status": "accepted",
        "version": 2,
        "reason_code": None,
        "outcome": "step_up",
        "priority": referral["decision"]["priority"],
        "agrees_with_rules": True,
    }


async def test_moves_and_agreement_with_the_rules_are_counted(
    client: httpx.AsyncClient, auth: Any
) -> None:
    from prometheus_client import REGISTRY

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    accepted = {"action": "triage", "from_status": "awaiting_triage", "to_status": "accepted"}
    agree = {"rules_outcome": "step_up", "outcome": "step_up", "agreement": "agree"}
    override = {"rules_outcome": "step_up", "outcome": "step_down", "agreement": "override"}
    before = (
        count("referral_moves_total", **accepted),
        count("referral_triage_decisions_total", **agree),
        count("referral_triage_decisions_total", **override),
    )
    one, two = await submit(client, auth), await submit(client, auth)
    await moved(client, auth, one["id"], "triage", {"outcome": "step_up"}, 1)
    await moved(
        client,
        auth,
        two["id"],
        "triage",
        {"outcome": "step_down", "reason": {"code": "clinical_judgement"}},
        1,
    )
    stale = await act(client, auth, one["id"], "close", {"reason": {"code": "other"}}, version=1)
    assert stale.status_code == 412  # a refusal moves nothing and counts nothing
    assert (
        count("referral_moves_total", **accepted),
        count("referral_triage_decisions_total", **agree),
        count("referral_triage_decisions_total", **override),
    ) == (before[0] + 1, before[1] + 1, before[2] + 1)
