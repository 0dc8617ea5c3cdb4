"""Organisations see only their own referrals; the team sees all; summaries show no PII."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.factories import make_referral_body

OWN = "RX1"
OTHER = "A81001"
TEAM = "PIT01"
TRIAGE = ("referrals:triage",)
REFERENCE = re.compile(r"^PIR-[A-HJ-NP-TV-Z2-9]{4}-[A-HJ-NP-TV-Z2-9]{4}$")

# The contract's list for the status view (with lifecycle.md's additions), plus the referral's
# own id and reference.
STATUS_FIELDS = {
    "version",
    "available_actions",
    "triaged_at",
    "status",
    "outcome",
    "priority",
    "provisional",
    "safeguarding_alert",
    "next_steps",
    "signposts",
    "updated_at",
}

# Distinctive personal data: none of it may appear in a status or a list.
PERSONAL = {
    "referrer_name": "Perpetua Vandersloot",
    "referrer_email": "perpetua.vandersloot@hv.example",
    "referrer_phone": "01632 960123",
    "infant_given": "Ottoline",
    "infant_family": "Quarrington",
    "infant_nhs": "4010232137",
    "caregiver_given": "Hephzibah",
    "caregiver_phone": "07700 900461",
    "caregiver_nhs": "4000000020",
    "postcode": "SW1A 2AA",
    "description": "cries whenever her grandmother Eudora visits",
    "diagnosis": "Puerperal psychosis in 2019",
}


def personal_body() -> dict[str, Any]:
    return make_referral_body(
        referrer__name=PERSONAL["referrer_name"],
        referrer__email=PERSONAL["referrer_email"],
        referrer__phone=PERSONAL["referrer_phone"],
        infant__given_name=PERSONAL["infant_given"],
        infant__family_name=PERSONAL["infant_family"],
        infant__nhs_number=PERSONAL["infant_nhs"],
        caregivers=[
            {
                "given_name": PERSONAL["caregiver_given"],
                "family_name": PERSONAL["infant_family"],
                "relationship": "mother",
                "phone": PERSONAL["caregiver_phone"],
                "nhs_number": PERSONAL["caregiver_nhs"],
            }
        ],
        postcode=PERSONAL["postcode"],
        concerns__description=PERSONAL["description"],
        diagnosis=PERSONAL["diagnosis"],
    )


async def submit(client: httpx.AsyncClient, auth, org: str, body: dict[str, Any] | None = None):
    response = await client.post(
        "/v1/referrals", json=body or make_referral_body(), headers=auth(org=org)
    )
    assert response.status_code == 201, response.text
    return response.json()


def _without_per_request_parts(problem_body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem_body.items() if k not in {"instance", "request_id"}}


async def test_other_organisation_gets_the_same_404_as_a_missing_referral(
    client: httpx.AsyncClient, auth, problem
) -> None:
    referral = await submit(client, auth, OWN)
    missing = str(uuid.uuid4())
    for suffix in ("", "/status"):
        hidden = await client.get(
            f"/v1/referrals/{referral['id']}{suffix}", headers=auth(org=OTHER)
        )
        absent = await client.get(f"/v1/referrals/{missing}{suffix}", headers=auth(org=OTHER))
        hidden_body, absent_body = problem(hidden, 404), problem(absent, 404)
        assert _without_per_request_parts(hidden_body) == _without_per_request_parts(absent_body)
        assert set(hidden_body) == set(absent_body)
        assert hidden.headers["content-type"] == absent.headers["content-type"]
        # Only `instance` (the path the caller asked for) may carry the id.
        assert referral["id"] not in str(_without_per_request_parts(hidden_body))
        assert referral["reference"] not in hidden.text

    # The owner still reads it: the 404 was about who asked.
    own = await client.get(f"/v1/referrals/{referral['id']}", headers=auth(org=OWN))
    assert own.status_code == 200
    assert own.json()["organisation"] == OWN


async def test_organisation_comes_from_the_token_not_the_body(
    client: httpx.AsyncClient, auth, problem
) -> None:
    response = await client.post(
        "/v1/referrals", json=make_referral_body(organisation=OTHER), headers=auth(org=OWN)
    )
    problem(response, 422, fields=("organisation",))
    referral = await submit(client, auth, OWN)
    assert referral["organisation"] == OWN


async def test_lists_hold_only_the_callers_organisation(client: httpx.AsyncClient, auth) -> None:
    own = await submit(client, auth, OWN)
    other = await submit(client, auth, OTHER)

    own_list = await client.get("/v1/referrals", headers=auth(org=OWN))
    other_list = await client.get("/v1/referrals", headers=auth(org=OTHER))
    stranger_list = await client.get("/v1/referrals", headers=auth(org="Y02468"))

    assert [item["id"] for item in own_list.json()["items"]] == [own["id"]]
    assert [item["id"] for item in other_list.json()["items"]] == [other["id"]]
    assert stranger_list.json() == {"items": [], "next_cursor": None}


async def test_triage_reads_and_lists_every_organisations_referrals(
    client: httpx.AsyncClient, auth
) -> None:
    own = await submit(client, auth, OWN)
    other = await submit(client, auth, OTHER)
    team = auth(org=TEAM, scopes=TRIAGE)

    for referral in (own, other):
        read = await client.get(f"/v1/referrals/{referral['id']}", headers=team)
        assert read.status_code == 200
        # The same referral; what differs is per caller: the team's buttons and its view of
        # the other organisation's referral of the same infant.
        per_caller = {"available_actions", "possible_duplicates"}
        assert {k: v for k, v in read.json().items() if k not in per_caller} == {
            k: v for k, v in referral.items() if k not in per_caller
        }
        assert read.json()["available_actions"] == ["triage", "withdraw"]
        status = await client.get(f"/v1/referrals/{referral['id']}/status", headers=team)
        assert status.status_code == 200
        assert status.json()["id"] == referral["id"]

    listed = await client.get("/v1/referrals", headers=team)
    items = listed.json()["items"]
    assert {item["id"] for item in items} == {own["id"], other["id"]}
    assert {item["organisation"] for item in items} == {OWN, OTHER}


async def test_status_and_lists_hold_no_personal_data(client: httpx.AsyncClient, auth) -> None:
    referral = await submit(client, auth, OWN, personal_body())
    # The control: the whole referral does carry every value (in its normalised form).
    full = await client.get(f"/v1/referrals/{referral['id']}", headers=auth(org=OWN))
    for value in PERSONAL.values():
        assert value in full.text, value

    responses = {
        "status": await client.get(f"/v1/referrals/{referral['id']}/status", headers=auth()),
        "team status": await client.get(
            f"/v1/referrals/{referral['id']}/status", headers=auth(org=TEAM, scopes=TRIAGE)
        ),
        "list": await client.get("/v1/referrals", headers=auth()),
        "team list": await client.get("/v1/referrals", headers=auth(org=TEAM, scopes=TRIAGE)),
    }
    for name, response in responses.items():
        assert response.status_code == 200, name
        for label, value in PERSONAL.items():
            assert value not in response.text, f"{label} in {name}"
        assert "SW1A" not in response.text, name
        assert "Vandersloot" not in response.text and "Eudora" not in response.text, name

    status = responses["status"].json()
    assert STATUS_FIELDS <= set(status) <= STATUS_FIELDS | {"id", "reference"}
    summary = responses["list"].json()["items"][0]
    assert not {"referrer", "infant", "caregivers", "postcode", "concerns", "diagnosis"} & set(
        summary
    )


async def test_every_referral_has_a_unique_unambiguous_reference(
    client: httpx.AsyncClient, auth
) -> None:
    referrals = [await submit(client, auth, org) for org in (OWN, OWN, OWN, OTHER, OTHER, OWN)]
    references = [r["reference"] for r in referrals]
    for reference in references:
        assert REFERENCE.fullmatch(reference), reference
        assert not set(reference[4:]) & set("0O1ILU"), reference
    assert len(set(references)) == len(references)

    status = await client.get(f"/v1/referrals/{referrals[0]['id']}/status", headers=auth())
    assert status.json()["reference"] == references[0]
    listed = await client.get("/v1/referrals", headers=auth(org=TEAM, scopes=TRIAGE))
    assert {item["reference"] for item in listed.json()["items"]} == set(references)
