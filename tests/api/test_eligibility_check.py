"""The eligibility dry run, `as_of`, and decisions as the API gives them."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import make_referral_body

CHECK = "/v1/eligibility/check"
TEAM = {"org": "PIT01", "scopes": ("referrals:triage",)}
DECISION_FIELDS = {
    "eligible",
    "outcome",
    "priority",
    "provisional",
    "safeguarding_alert",
    "criteria",
    "reasons",
    "score",
    "contributions",
    "next_steps",
    "signposts",
    "ruleset",
}

# Fixed dates, independent of today: born 10 March 2025, so 24 months old on 10 March 2027.
BORN = "2025-03-10"
CONSENTED = "2025-03-20"


def dated_body(**overrides: Any) -> dict[str, Any]:
    return make_referral_body(
        infant__date_of_birth=BORN, consent__recorded_on=CONSENTED, **overrides
    )


def codes(decision: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in decision["reasons"]]


async def check(client: httpx.AsyncClient, auth, body: dict[str, Any], **params: Any):
    return await client.post(CHECK, json=body, params=params, headers=auth())


async def test_dry_run_returns_the_decision_and_stores_no_referral(
    client: httpx.AsyncClient, auth
) -> None:
    response = await check(client, auth, make_referral_body())
    assert response.status_code == 200, response.text
    decision = response.json()
    assert set(decision) == DECISION_FIELDS
    assert decision["eligible"] is True
    assert decision["outcome"] == "step_up"
    assert decision["provisional"] is True
    assert decision["criteria"] == {
        "age": "met",
        "relationship_concern": "met",
        "catchment": "met",
        "diagnosis": "not_required",
    }
    # domestic abuse (severe risk, 2) + 6 weeks of concern (4 to 11 weeks, 1) = 3
    assert decision["score"] == 3
    assert {"indicator": "domestic_abuse", "weight": 2} in decision["contributions"]
    assert sum(c["weight"] for c in decision["contributions"]) == 3

    for headers in (auth(), auth(**TEAM)):
        listed = await client.get("/v1/referrals", headers=headers)
        assert listed.json() == {"items": [], "next_cursor": None}


async def test_dry_run_matches_what_submitting_decides(client: httpx.AsyncClient, auth) -> None:
    body = make_referral_body()
    dry = await check(client, auth, body)
    submitted = await client.post("/v1/referrals", json=body, headers=auth())
    assert submitted.status_code == 201
    assert submitted.json()["decision"] == dry.json()


@pytest.mark.parametrize(
    ("as_of", "outcome", "age"),
    [
        pytest.param("2025-06-01", "step_up", "met", id="12-weeks-old"),
        pytest.param("2027-03-09", "step_up", "met", id="day-before-24-months"),
        pytest.param("2027-03-10", "signpost", "not_met", id="24-months-to-the-day"),
        pytest.param("2028-01-01", "signpost", "not_met", id="nearly-3"),
    ],
)
async def test_as_of_is_the_evaluation_date(
    client: httpx.AsyncClient, auth, as_of: str, outcome: str, age: str
) -> None:
    response = await check(client, auth, dated_body(), as_of=as_of)
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["outcome"] == outcome
    assert decision["criteria"]["age"] == age
    assert ("AGE_OVER_LIMIT" in codes(decision)) is (age == "not_met")


async def test_an_infant_under_two_today_is_over_the_limit_at_a_later_as_of(
    client: httpx.AsyncClient, auth, service_today: date
) -> None:
    body = make_referral_body(
        infant__date_of_birth=(service_today - timedelta(days=120)).isoformat()
    )
    today = await check(client, auth, body)
    later = await check(client, auth, body, as_of=(service_today + timedelta(days=731)).isoformat())
    assert today.json()["outcome"] == "step_up"
    assert later.status_code == 200, later.text
    assert later.json()["outcome"] == "signpost"
    assert later.json()["eligible"] is False
    assert "AGE_OVER_LIMIT" in codes(later.json())


AS_OF = date(2030, 1, 15)


def _due(days: int) -> dict[str, Any]:
    return make_referral_body(
        infant={"expected_due_date": (AS_OF + timedelta(days=days)).isoformat()},
        consent__recorded_on="2029-12-01",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(_due(-14), None, id="due-14-days-before"),
        pytest.param(_due(-15), "infant.expected_due_date", id="due-15-days-before"),
        pytest.param(_due(294), None, id="due-294-days-after"),
        pytest.param(_due(295), "infant.expected_due_date", id="due-295-days-after"),
        pytest.param(
            make_referral_body(
                infant__date_of_birth="2030-01-15", consent__recorded_on="2029-12-01"
            ),
            None,
            id="born-on-as-of",
        ),
        pytest.param(
            make_referral_body(
                infant__date_of_birth="2030-01-16", consent__recorded_on="2029-12-01"
            ),
            "infant.date_of_birth",
            id="born-after-as-of",
        ),
        pytest.param(
            make_referral_body(
                infant__date_of_birth="2029-06-01", consent__recorded_on="2030-01-16"
            ),
            "consent.recorded_on",
            id="consent-after-as-of",
        ),
    ],
)
async def test_date_checks_are_made_against_as_of(
    client: httpx.AsyncClient, auth, problem, body: dict[str, Any], field: str | None
) -> None:
    # All these dates are years ahead of today: only as_of makes them valid or not.
    response = await check(client, auth, body, as_of=AS_OF.isoformat())
    if field is None:
        assert response.status_code == 200, response.text
        assert response.json()["criteria"]["age"] == "met"
    else:
        problem(response, 422, fields=(field,))


async def test_default_as_of_is_today(
    client: httpx.AsyncClient, auth, problem, service_today: date
) -> None:
    ahead = (service_today + timedelta(days=295)).isoformat()
    body = make_referral_body(infant={"expected_due_date": ahead})
    problem(await check(client, auth, body), 422, fields=("infant.expected_due_date",))
    edge = (service_today + timedelta(days=294)).isoformat()
    ok = await check(client, auth, make_referral_body(infant={"expected_due_date": edge}))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("as_of", ["tomorrow", "2030-02-30", "15/01/2030"])
async def test_bad_as_of_is_422(client: httpx.AsyncClient, auth, problem, as_of: str) -> None:
    response = await check(client, auth, make_referral_body(), as_of=as_of)
    problem(response, 422, fields=("as_of",))


async def test_dry_run_refuses_unknown_codes_like_intake(
    client: httpx.AsyncClient, auth, problem
) -> None:
    body = make_referral_body(concerns__codes=["tantrums"])
    body = problem(await check(client, auth, body), 422, fields=("concerns.codes[0]",))
    assert "tantrums" in body["errors"][0]["message"]


@pytest.mark.parametrize("endpoint", ["check", "submit"])
async def test_diagnosis_never_changes_the_decision(
    client: httpx.AsyncClient, auth, endpoint: str
) -> None:
    decisions = []
    for diagnosis in (None, "Postnatal depression; infant reflux"):
        body = make_referral_body(diagnosis=diagnosis)
        if endpoint == "check":
            response = await check(client, auth, body)
            assert response.status_code == 200, response.text
            decisions.append(response.json())
        else:
            response = await client.post("/v1/referrals", json=body, headers=auth())
            assert response.status_code == 201, response.text
            decisions.append(response.json()["decision"])
    assert decisions[0] == decisions[1]
    assert decisions[0]["criteria"]["diagnosis"] == "not_required"


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        pytest.param({"concerns__codes": ["feeding_only"]}, "signpost", id="signposted"),
        pytest.param(
            {"risk_factors": [], "concerns__duration_weeks": 0}, "step_up", id="risk-alone-scores-3"
        ),
        pytest.param({}, "step_up", id="step-up"),
    ],
)
async def test_immediate_risk_raises_the_alert_and_is_urgent_whatever_the_outcome(
    client: httpx.AsyncClient, auth, overrides: dict[str, Any], outcome: str
) -> None:
    body = make_referral_body(safeguarding__immediate_risk=True, **overrides)
    response = await client.post("/v1/referrals", json=body, headers=auth())
    assert response.status_code == 201, response.text
    decision = response.json()["decision"]
    assert decision["outcome"] == outcome
    assert decision["safeguarding_alert"] is True
    assert decision["priority"] == "urgent"
    status = await client.get(f"{response.headers['location']}/status", headers=auth())
    assert status.json()["safeguarding_alert"] is True
    assert status.json()["priority"] == "urgent"


async def test_no_immediate_risk_no_alert(client: httpx.AsyncClient, auth) -> None:
    response = await check(client, auth, make_referral_body(concerns__codes=["feeding_only"]))
    decision = response.json()
    assert decision["outcome"] == "signpost"
    assert decision["safeguarding_alert"] is False
    assert decision["priority"] == "routine"


async def test_decisions_name_the_active_ruleset(client: httpx.AsyncClient, auth) -> None:
    pathway = (await client.get("/v1/pathway")).json()["ruleset"]
    dry = await check(client, auth, make_referral_body())
    submitted = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    read = await client.get(submitted.headers["location"], headers=auth())
    for decision in (dry.json(), submitted.json()["decision"], read.json()["decision"]):
        assert decision["ruleset"] == pathway
    assert set(pathway) == {"id", "version", "sha256"}


@pytest.mark.parametrize("as_of", ["0001-01-01", "9999-12-31"])
async def test_an_evaluation_date_out_of_range_is_422(
    client: httpx.AsyncClient, auth, problem, as_of: str
) -> None:
    body = make_referral_body()
    response = await client.post(
        "/v1/eligibility/check", params={"as_of": as_of}, json=body, headers=auth()
    )
    problem(response, 422, fields=("as_of",))
