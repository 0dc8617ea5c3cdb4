"""Possible duplicates at intake: warned, never blocked, and shown only to those who may read."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.lifecycle.helpers import OTHER_REFERRER, REFERRER, TEAM, WITHDRAW, moved, submit

NHS = "9434765919"
SAME_INFANT_NO_NUMBER = {
    "infant__nhs_number": None,
    "infant__family_name": "O'Brien-Smith",
}


async def test_the_same_nhs_number_is_a_possible_duplicate_never_a_refusal(
    client: httpx.AsyncClient, auth: Any
) -> None:
    first = await submit(client, auth, infant__nhs_number=NHS)
    second = await submit(client, auth, infant__nhs_number=NHS)
    assert second["possible_duplicates"] == [
        {
            "id": first["id"],
            "reference": first["reference"],
            "status": "awaiting_triage",
            "received_at": first["received_at"],
            "match": "nhs_number",
        }
    ]
    assert first["possible_duplicates"] == []


async def test_names_match_whatever_their_case_spaces_and_hyphens(
    client: httpx.AsyncClient, auth: Any
) -> None:
    first = await submit(client, auth, **SAME_INFANT_NO_NUMBER)
    second = await submit(
        client, auth, infant__nhs_number=NHS, infant__family_name="  o'brien smith "
    )
    assert [(d["id"], d["match"]) for d in second["possible_duplicates"]] == [
        (first["id"], "name_and_date")
    ]
    other_postcode = await submit(client, auth, postcode="SW1A 1AA", **SAME_INFANT_NO_NUMBER)
    assert first["id"] not in [d["id"] for d in other_postcode["possible_duplicates"]]


async def test_two_numbers_that_differ_are_not_matched_by_name(
    client: httpx.AsyncClient, auth: Any
) -> None:
    await submit(client, auth, infant__nhs_number=NHS)
    other = await submit(client, auth, infant__nhs_number="4010232137")
    assert other["possible_duplicates"] == []


async def test_only_open_referrals_are_possible_duplicates(
    client: httpx.AsyncClient, auth: Any
) -> None:
    first = await submit(client, auth, infant__nhs_number=NHS)
    await moved(client, auth, first["id"], "withdraw", WITHDRAW, 1, who=REFERRER)
    again = await submit(client, auth, infant__nhs_number=NHS)
    assert again["possible_duplicates"] == []


async def test_each_referrer_sees_only_its_own_match_and_the_team_sees_both(
    client: httpx.AsyncClient, auth: Any
) -> None:
    ours = await submit(client, auth, infant__nhs_number=NHS)
    theirs = await submit(client, auth, who=OTHER_REFERRER, infant__nhs_number=NHS)
    assert theirs["possible_duplicates"] == []  # ours is not theirs to see
    ours_again = await submit(client, auth, infant__nhs_number=NHS)
    assert [d["id"] for d in ours_again["possible_duplicates"]] == [ours["id"]]

    team_view = await client.get(f"/v1/referrals/{theirs['id']}", headers=auth(**TEAM))
    linked = {d["id"] for d in team_view.json()["possible_duplicates"]}
    assert linked == {ours["id"], ours_again["id"]}
    own_view = await client.get(f"/v1/referrals/{theirs['id']}", headers=auth(**OTHER_REFERRER))
    assert own_view.json()["possible_duplicates"] == []


async def test_the_audit_event_records_the_count_only(client: httpx.AsyncClient, auth: Any) -> None:
    await submit(client, auth, infant__nhs_number=NHS)
    second = await submit(client, auth, infant__nhs_number=NHS)
    events = await client.get(
        "/v1/audit-events",
        params={"referral_id": second["id"], "action": "referral.created"},
        headers=auth(org="PIT01", scopes=("audit:read_all",)),
    )
    (created,) = events.json()["items"]
    assert created["details"]["possible_duplicates"] == 1
    assert NHS not in events.text
