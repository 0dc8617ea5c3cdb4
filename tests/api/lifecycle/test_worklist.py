"""The team's worklist: safeguarding first, then urgent, then oldest; paging while it moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api.lifecycle.helpers import TEAM, moved, submit

RISK = {"immediate_risk": True, "child_protection_plan": False, "child_in_need_plan": False}


async def test_worklist_order_and_waiting_days(
    app: Any, client: httpx.AsyncClient, auth: Any, pin_clock: Any
) -> None:
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    made = {}
    for day, (name, overrides) in enumerate(
        [
            ("routine-old", {}),
            ("urgent", {"referrer_urgency": "urgent"}),
            ("alert", {"safeguarding": RISK}),
            ("routine-new", {}),
        ]
    ):
        pin_clock(start + timedelta(days=day))
        consented = (start - timedelta(days=1)).date().isoformat()
        made[name] = (await submit(client, auth, consent__recorded_on=consented, **overrides))["id"]
    pin_clock(start + timedelta(days=10))
    response = await client.get(
        "/v1/referrals",
        params={"status": "awaiting_triage", "sort": "triage"},
        headers=auth(**TEAM),
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["id"] for i in items] == [
        made["alert"],
        made["urgent"],
        made["routine-old"],
        made["routine-new"],
    ]
    assert [i["waiting_days"] for i in items] == [8, 9, 10, 7]
    assert all(i["version"] == 1 for i in items)
    newest = await client.get("/v1/referrals", headers=auth(**TEAM))
    assert [i["id"] for i in newest.json()["items"]][0] == made["routine-new"]


async def test_paging_the_worklist_while_another_clinician_triages(
    client: httpx.AsyncClient, auth: Any
) -> None:
    ids = [(await submit(client, auth))["id"] for _ in range(7)]
    params = {"status": "awaiting_triage", "sort": "triage", "limit": 2}
    seen: list[str] = []
    first = await client.get("/v1/referrals", params=params, headers=auth(**TEAM))
    page = first.json()
    seen += [i["id"] for i in page["items"]]
    triaged = {seen[0], ids[3]}  # one already seen, one not yet reached
    for rid in triaged:
        await moved(client, auth, rid, "triage", {"outcome": "step_up"}, 1)
    while page["next_cursor"]:
        response = await client.get(
            "/v1/referrals",
            params={**params, "cursor": page["next_cursor"]},
            headers=auth(**TEAM),
        )
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(seen) == set(ids) - {ids[3]}  # nothing skipped that is still waiting
    assert seen == sorted(seen, key=ids.index)  # oldest first (no alerts, all routine)


async def test_a_cursor_from_one_order_is_refused_by_the_other(
    client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    for _ in range(3):
        await submit(client, auth)
    page = await client.get("/v1/referrals", params={"limit": 1}, headers=auth(**TEAM))
    cursor = page.json()["next_cursor"]
    response = await client.get(
        "/v1/referrals",
        params={"limit": 1, "sort": "triage", "cursor": cursor},
        headers=auth(**TEAM),
    )
    problem(response, 422, fields=("cursor",))
