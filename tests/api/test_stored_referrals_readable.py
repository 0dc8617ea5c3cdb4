"""A stored referral stays readable whatever has changed since it was accepted (issue #10).

The request schemas are strict and may be tightened; a consent may be withdrawn later; a field
may be retired. Rows here are written straight into the table (as an older release or a later
change would have left them), never through intake, and each must read back with 200 through
the HTTP API: the whole referral, its status and the list.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from service.models import REFERRALS
from tests.factories import make_referral_body

TEAM = {"org": "PIT01", "scopes": ("referrals:triage",)}
FAILS_MODULUS_11 = "9434765918"  # 9434765919 with its check digit changed


def _retired_fields(payload: dict[str, Any]) -> None:
    payload["legacy_channel"] = "fax"
    payload["infant"]["sex_at_birth"] = "not_known"
    payload["caregivers"][0]["preferred_language"] = "cy"
    payload["decision_note"] = {"nested": ["anything"]}


def _consent_withdrawn(payload: dict[str, Any]) -> None:
    payload["consent"]["caregiver_consent"] = False


def _nhs_number_fails_check(payload: dict[str, Any]) -> None:
    payload["infant"]["nhs_number"] = FAILS_MODULUS_11
    payload["caregivers"][0]["nhs_number"] = FAILS_MODULUS_11


def _infant_with_both_dates(payload: dict[str, Any]) -> None:
    payload["infant"]["expected_due_date"] = payload["infant"]["date_of_birth"]


def _infant_with_neither_date(payload: dict[str, Any]) -> None:
    payload["infant"]["date_of_birth"] = None
    payload["infant"].pop("expected_due_date", None)


def _patterns_since_tightened(payload: dict[str, Any]) -> None:
    payload["postcode"] = "ox4 1aa"  # stored before normalisation was added
    payload["referrer"]["phone"] = "ext. 4412"
    payload["referrer"]["email"] = "duty desk"
    payload["concerns"]["codes"] = ["code_of_an_older_ruleset"]
    payload["risk_factors"] = ["retired_risk", "retired_risk"]


CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "retired-fields": _retired_fields,
    "consent-withdrawn": _consent_withdrawn,
    "nhs-number-fails-modulus-11": _nhs_number_fails_check,
    "infant-both-dates": _infant_with_both_dates,
    "infant-neither-date": _infant_with_neither_date,
    "patterns-since-tightened": _patterns_since_tightened,
}


async def _store_changed_copy(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, change: Callable[..., None]
) -> tuple[str, dict[str, Any]]:
    """Submit one valid referral, then insert a copy of its row with `change` applied."""
    created = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    assert created.status_code == 201, created.text
    engine = app.state.services.engine
    async with engine.begin() as connection:
        row = (
            await connection.execute(
                select(REFERRALS).where(REFERRALS.c.id == created.json()["id"])
            )
        ).one()
        values = dict(row._mapping)
        payload = copy.deepcopy(values["payload"])
        change(payload)
        values.update(id=str(uuid.uuid4()), reference="PIR-STOR-ED22", payload=payload)
        await connection.execute(REFERRALS.insert().values(**values))
    return values["id"], payload


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
async def test_stored_referral_reads_back(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, change: Callable[..., None]
) -> None:
    referral_id, payload = await _store_changed_copy(app, client, auth, change)

    whole = await client.get(f"/v1/referrals/{referral_id}", headers=auth())
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["id"] == referral_id
    # Served as stored: known fields unchanged, retired ones dropped, nothing re-checked.
    assert body["infant"]["nhs_number"] == payload["infant"]["nhs_number"]
    assert body["infant"]["date_of_birth"] == payload["infant"]["date_of_birth"]
    assert body["infant"].get("expected_due_date") == payload["infant"].get("expected_due_date")
    assert body["consent"]["caregiver_consent"] is payload["consent"]["caregiver_consent"]
    assert body["postcode"] == payload["postcode"]
    assert body["concerns"]["codes"] == payload["concerns"]["codes"]
    assert body["risk_factors"] == payload["risk_factors"]
    assert "legacy_channel" not in body and "decision_note" not in body
    assert "sex_at_birth" not in body["infant"]
    assert "preferred_language" not in body["caregivers"][0]

    status = await client.get(f"/v1/referrals/{referral_id}/status", headers=auth())
    assert status.status_code == 200, status.text
    assert status.json()["id"] == referral_id

    for headers in (auth(), auth(**TEAM)):
        listed = await client.get("/v1/referrals", headers=headers)
        assert listed.status_code == 200, listed.text
        assert referral_id in [item["id"] for item in listed.json()["items"]]
