"""No personal data in the audit trail: not in any event the API shows, not in any stored row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from service.models import AUDIT_CHAIN_HEADS, AUDIT_EVENTS, REFERRALS
from tests.conftest import ALL_SCOPES
from tests.factories import make_referral_body

Auth = Callable[..., dict[str, str]]

# Distinctive values that appear nowhere else, so any occurrence is a leak.
REFERRER_NAME = "Wilhelmina Quarrington"
REFERRER_EMAIL = "w.quarrington@zebrafinch-clinic.example"
REFERRER_PHONE = "01632 960555"
INFANT_GIVEN = "Peregrine"
INFANT_FAMILY = "Oxleyhurst"
INFANT_NHS = "4010232137"
CAREGIVER_GIVEN = "Marisol"
CAREGIVER_FAMILY = "Fenwickshaw"
CAREGIVER_PHONE = "07700 900987"
CAREGIVER_NHS = "4857773457"
POSTCODE = "ZE2 9XQ"
DESCRIPTION = "Worried about the lighthouse lullaby ritual every evening"
DIAGNOSIS = "Quixotic perinatal anxiety, Xanthippe variant"

NEEDLES = [
    REFERRER_NAME,
    "Quarrington",
    REFERRER_EMAIL,
    "zebrafinch",
    REFERRER_PHONE,
    REFERRER_PHONE.replace(" ", ""),
    INFANT_GIVEN,
    INFANT_FAMILY,
    INFANT_NHS,
    "401 023 2137",
    CAREGIVER_GIVEN,
    CAREGIVER_FAMILY,
    CAREGIVER_PHONE,
    CAREGIVER_PHONE.replace(" ", ""),
    CAREGIVER_NHS,
    POSTCODE,
    POSTCODE.replace(" ", ""),
    "lighthouse lullaby",
    "Xanthippe",
    "Quixotic",
]


def personal_body(**overrides: Any) -> dict[str, Any]:
    return make_referral_body(
        referrer__name=REFERRER_NAME,
        referrer__email=REFERRER_EMAIL,
        referrer__phone=REFERRER_PHONE,
        infant__given_name=INFANT_GIVEN,
        infant__family_name=INFANT_FAMILY,
        infant__nhs_number="401 023 2137",
        caregivers=[
            {
                "given_name": CAREGIVER_GIVEN,
                "family_name": CAREGIVER_FAMILY,
                "relationship": "mother",
                "phone": CAREGIVER_PHONE,
                "nhs_number": CAREGIVER_NHS,
            }
        ],
        postcode=POSTCODE.lower().replace(" ", ""),
        concerns__description=DESCRIPTION,
        diagnosis=DIAGNOSIS,
        **overrides,
    )


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [needle for needle in NEEDLES if needle.lower() in lowered]


async def dump_table(app: FastAPI, table: Any) -> str:
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(table))).mappings().all()
    # Both the Python values and their JSON: a nested value shows in one or the other.
    return "\n".join(f"{dict(r)!r} {json.dumps(dict(r), default=str)}" for r in rows)


async def test_no_personal_data_reaches_any_audit_event(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI
) -> None:
    partner = auth(org="RX1", sub="hv-system-1")
    body = personal_body()

    created = await client.post("/v1/referrals", json=body, headers=partner)
    assert created.status_code == 201, created.text
    referral_id = created.json()["id"]
    keyed = {**partner, "Idempotency-Key": "pii-key-1"}
    assert (await client.post("/v1/referrals", json=body, headers=keyed)).status_code == 201
    replay = await client.post("/v1/referrals", json=body, headers=keyed)
    assert replay.headers.get("idempotent-replayed") == "true"
    urgent = personal_body(
        safeguarding__immediate_risk=True, referrer_urgency="urgent", risk_factors=[]
    )
    assert (await client.post("/v1/referrals", json=urgent, headers=partner)).status_code == 201

    read = await client.get(f"/v1/referrals/{referral_id}", headers=partner)
    assert read.status_code == 200
    assert read.json()["infant"]["family_name"] == INFANT_FAMILY  # the referral does hold it
    assert (await client.get(f"/v1/referrals/{referral_id}/status", headers=partner)).is_success
    assert (await client.get("/v1/referrals", headers=partner)).is_success
    checked = await client.post("/v1/eligibility/check", json=body, headers=partner)
    assert checked.status_code == 200

    # Refusals, with the personal data in the request they refuse.
    outsider = auth(org="RX2", sub="gp-system-2")
    assert (await client.get(f"/v1/referrals/{referral_id}", headers=outsider)).status_code == 404
    reader = auth(scopes=("referrals:read",))
    assert (await client.post("/v1/referrals", json=body, headers=reader)).status_code == 403
    assert (
        await client.post("/v1/eligibility/check", json=body, headers=reader)
    ).status_code == 403
    missing = await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=partner)
    assert missing.status_code == 404

    auditor = auth(org="AUD01", sub="auditor-1", scopes=ALL_SCOPES)
    assert (await client.get("/v1/audit-events/verify", headers=auditor)).json()["valid"]
    filtered = await client.get(
        "/v1/audit-events", params={"referral_id": referral_id}, headers=auditor
    )
    assert filtered.status_code == 200

    # Everything the API shows of the trail.
    shown: list[str] = []
    cursor = None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/v1/audit-events", params=params, headers=auditor)
        assert page.status_code == 200
        shown.append(page.text)
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    api_text = "\n".join(shown)
    assert json.loads(shown[0])["items"], "the trail should not be empty"
    assert leaks(api_text) == []

    # Every stored row, every column.
    stored_events = await dump_table(app, AUDIT_EVENTS)
    assert stored_events.count("'action': 'referral.created'") == 4
    assert leaks(stored_events) == []
    assert leaks(await dump_table(app, AUDIT_CHAIN_HEADS)) == []

    # The check finds the data where it belongs, so an empty result above means something.
    assert set(leaks(await dump_table(app, REFERRALS))) >= {
        REFERRER_NAME,
        INFANT_FAMILY,
        INFANT_NHS,
        CAREGIVER_FAMILY,
        POSTCODE,
        "lighthouse lullaby",
        "Xanthippe",
    }
