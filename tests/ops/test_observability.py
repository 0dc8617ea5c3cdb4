"""Metrics and logs say what happened without a single piece of personal data."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client import REGISTRY

from service.core import metrics
from service.core.logs import JsonFormatter
from tests.factories import make_referral_body

DISTINCTIVE = {
    "infant__given_name": "Zebedee",
    "infant__family_name": "Quillfeather",
    "caregivers": [
        {
            "given_name": "Ophelia",
            "family_name": "Quillfeather",
            "relationship": "mother",
            "phone": "07700 912345",
            "nhs_number": "4010232137",
        }
    ],
    "postcode": "SW1A 2AA",
    "concerns__description": "Marmalade-coloured dreams",
    "diagnosis": "Xylophonic syndrome",
}
PERSONAL = [
    "Zebedee",
    "Quillfeather",
    "Ophelia",
    "07700 912345",
    "4010232137",
    "SW1A 2AA",
    "Marmalade",
    "Xylophonic",
    "9434765919",
    "sam.carter@nhs.example",
]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_requests_by_route_template_and_referrals_by_outcome(
    client: httpx.AsyncClient, auth
) -> None:
    created_before = sample(
        "referral_referrals_created_total", outcome="step_up", priority="routine"
    )
    posts_before = sample(
        "referral_http_requests_total", route="/v1/referrals", method="POST", status="201"
    )
    created = await client.post(
        "/v1/referrals", json=make_referral_body(**DISTINCTIVE), headers=auth()
    )
    assert created.status_code == 201
    referral_id = created.json()["id"]
    await client.get(f"/v1/referrals/{referral_id}", headers=auth())

    text = metrics.render()[0].decode()
    assert (
        sample("referral_referrals_created_total", outcome="step_up", priority="routine")
        == created_before + 1
    )
    assert (
        sample("referral_http_requests_total", route="/v1/referrals", method="POST", status="201")
        == posts_before + 1
    )
    assert 'route="/v1/referrals/{referral_id}"' in text
    assert "referral_audit_head_seq" in text
    assert "referral_db_pool_connections_in_use" in text
    assert referral_id not in text
    assert not [p for p in PERSONAL if p in text]


async def test_safeguarding_alerts_are_counted(client: httpx.AsyncClient, auth) -> None:
    before = sample("referral_safeguarding_alerts_total")
    calm = make_referral_body()
    alarming = make_referral_body(safeguarding__immediate_risk=True)
    for body in (calm, alarming):
        assert (await client.post("/v1/referrals", json=body, headers=auth())).status_code == 201
    assert sample("referral_safeguarding_alerts_total") == before + 1


async def test_a_replay_is_not_counted_as_a_new_referral(client: httpx.AsyncClient, auth) -> None:
    headers = {**auth(), "Idempotency-Key": "count-me-once"}
    before = sample("referral_referrals_created_total", outcome="step_up", priority="routine")
    for _ in range(3):
        assert (
            await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
        ).status_code == 201
    assert (
        sample("referral_referrals_created_total", outcome="step_up", priority="routine")
        == before + 1
    )


async def test_logs_carry_request_facts_and_no_personal_data(
    client: httpx.AsyncClient, auth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good = make_referral_body(**DISTINCTIVE)
    bad = make_referral_body(
        **DISTINCTIVE, infant__nhs_number="9434765918", concerns__codes=["Zebedee"]
    )
    await client.post("/v1/referrals", json=good, headers={**auth(), "X-Request-ID": "req-42"})
    await client.post("/v1/referrals", json=bad, headers=auth())
    await client.post(
        "/v1/referrals",
        content=json.dumps(good)[:-3],
        headers={**auth(), "Content-Type": "application/json"},
    )

    lines = [JsonFormatter().format(record) for record in caplog.records]
    access = [json.loads(line) for line in lines if '"message": "request"' in line]
    assert {(a["route"], a["status"]) for a in access} >= {
        ("/v1/referrals", 201),
        ("/v1/referrals", 422),
        ("/v1/referrals", 400),
    }
    first = next(a for a in access if a.get("correlation_id") == "req-42")
    assert {"time", "level", "message", "request_id", "route", "status", "duration_ms"} <= set(
        first
    )
    assert first["request_id"] != "req-42"
    everything = "\n".join(lines)
    assert not [p for p in PERSONAL if p in everything]


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
async def test_the_contract_and_docs_are_counted_by_their_own_route(
    client: httpx.AsyncClient, path: str
) -> None:
    named = {"route": path, "method": "GET", "status": "200"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "200"}
    before = sample("referral_http_requests_total", **named)
    before_unmatched = sample("referral_http_requests_total", **unmatched)
    assert (await client.get(path)).status_code == 200
    assert sample("referral_http_requests_total", **named) == before + 1
    assert sample("referral_http_requests_total", **unmatched) == before_unmatched
