"""Every validation rule on a submitted referral: 422 naming the field, or 201 at a boundary."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import REMOVE, make_referral_body

# 9434765919: 9*10+4*9+3*8+4*7+7*6+6*5+5*4+9*3+1*2 = 299; 299 % 11 = 2; 11 - 2 = 9, the last
# digit. 4000000080: 4*10 + 8*2 = 56; 56 % 11 = 1; 11 - 1 = 10, which no digit can be.
VALID_NHS = "9434765919"
BAD_CHECK_DIGIT_NHS = "9434765918"
CHECK_DIGIT_TEN_NHS = "4000000080"


async def submit(client: httpx.AsyncClient, auth: Any, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/referrals", json=body, headers=auth())


def _caregiver(**overrides: Any) -> dict[str, Any]:
    caregiver = {"given_name": "Jo", "family_name": "Example", "relationship": "mother"}
    caregiver.update(overrides)
    return caregiver


# (overrides for make_referral_body, the field the 422 must name)
INVALID_BODIES = [
    pytest.param(
        {"infant__nhs_number": BAD_CHECK_DIGIT_NHS}, "infant.nhs_number", id="nhs-bad-check-digit"
    ),
    pytest.param(
        {"infant__nhs_number": CHECK_DIGIT_TEN_NHS}, "infant.nhs_number", id="nhs-check-digit-10"
    ),
    pytest.param({"infant__nhs_number": "943476591"}, "infant.nhs_number", id="nhs-nine-digits"),
    pytest.param(
        {"caregivers": [_caregiver(nhs_number=BAD_CHECK_DIGIT_NHS)]},
        "caregivers[0].nhs_number",
        id="caregiver-nhs-bad-check-digit",
    ),
    pytest.param(
        {"caregivers": [_caregiver(), _caregiver(nhs_number=CHECK_DIGIT_TEN_NHS)]},
        "caregivers[1].nhs_number",
        id="second-caregiver-nhs-check-digit-10",
    ),
    pytest.param({"postcode": "QX4 1AA"}, "postcode", id="postcode-q-cannot-start"),
    pytest.param({"postcode": "OX4"}, "postcode", id="postcode-outward-only"),
    pytest.param({"postcode": ""}, "postcode", id="postcode-empty"),
    pytest.param({"postcode": REMOVE}, "postcode", id="postcode-missing"),
    pytest.param(
        {"consent__caregiver_consent": False}, "consent.caregiver_consent", id="no-consent"
    ),
    pytest.param({"caregivers": []}, "caregivers", id="no-caregivers"),
    pytest.param({"caregivers": [_caregiver()] * 7}, "caregivers", id="seven-caregivers"),
    pytest.param({"concerns__codes": []}, "concerns.codes", id="no-concern-codes"),
    pytest.param(
        {"concerns__description": "x" * 4001}, "concerns.description", id="description-4001"
    ),
    pytest.param({"referrer__name": "n" * 101}, "referrer.name", id="referrer-name-101"),
    pytest.param({"infant__family_name": "n" * 101}, "infant.family_name", id="infant-name-101"),
    pytest.param(
        {"caregivers": [_caregiver(given_name="n" * 101)]},
        "caregivers[0].given_name",
        id="caregiver-name-101",
    ),
    pytest.param({"referrer__role": "nurse"}, "referrer.role", id="enum-referrer-role"),
    pytest.param(
        {"caregivers": [_caregiver(relationship="aunt")]},
        "caregivers[0].relationship",
        id="enum-caregiver-relationship",
    ),
    pytest.param({"referrer_urgency": "asap"}, "referrer_urgency", id="enum-urgency"),
    pytest.param(
        {"services_involved": ["health_visiting", "dentist"]},
        "services_involved[1]",
        id="enum-service-involved",
    ),
    pytest.param(
        {"concerns__duration_weeks": -1}, "concerns.duration_weeks", id="duration-negative"
    ),
    pytest.param(
        {"concerns__duration_weeks": 1.5}, "concerns.duration_weeks", id="duration-not-whole"
    ),
    pytest.param({"nickname": "x"}, "nickname", id="unknown-field-top-level"),
    pytest.param({"infant__middle_name": "x"}, "infant.middle_name", id="unknown-field-infant"),
    pytest.param(
        {"caregivers": [_caregiver(email="jo@example.org")]},
        "caregivers[0].email",
        id="unknown-field-caregiver",
    ),
    pytest.param({"concerns__severity": "high"}, "concerns.severity", id="unknown-field-concerns"),
    pytest.param({"referrer": REMOVE}, "referrer", id="missing-referrer"),
    pytest.param(
        {"safeguarding__immediate_risk": REMOVE},
        "safeguarding.immediate_risk",
        id="missing-immediate-risk",
    ),
]


@pytest.mark.parametrize(("overrides", "field"), INVALID_BODIES)
async def test_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, auth, problem, overrides: dict[str, Any], field: str
) -> None:
    response = await submit(client, auth, make_referral_body(**overrides))
    problem(response, 422, fields=(field,))


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        pytest.param(
            {"concerns__codes": ["bonding_difficulties", "not_a_concern"]},
            "concerns.codes[1]",
            "not_a_concern",
            id="concern-code",
        ),
        pytest.param(
            {"risk_factors": ["domestic_abuse", "social_isolation", "moon_phase"]},
            "risk_factors[2]",
            "moon_phase",
            id="risk-factor",
        ),
    ],
)
async def test_unknown_code_is_422_naming_the_field_and_the_code(
    client: httpx.AsyncClient, auth, problem, overrides: dict[str, Any], field: str, code: str
) -> None:
    body = problem(
        await submit(client, auth, make_referral_body(**overrides)), 422, fields=(field,)
    )
    messages = [e["message"] for e in body["errors"] if e["field"] == field]
    assert any(code in message for message in messages), body["errors"]


@pytest.mark.parametrize(
    "infant",
    [
        pytest.param({"given_name": "Alex"}, id="neither"),
        pytest.param({"date_of_birth": "2025-01-01", "expected_due_date": "2025-06-01"}, id="both"),
    ],
)
async def test_exactly_one_of_date_of_birth_and_due_date(
    client: httpx.AsyncClient, auth, problem, infant: dict[str, Any]
) -> None:
    body = problem(await submit(client, auth, make_referral_body(infant=infant)), 422)
    named = {e["field"] for e in body["errors"]}
    # A cross-field rule: naming the infant object or either date field names it.
    assert named & {"infant", "infant.date_of_birth", "infant.expected_due_date"}, body


def _dated(today: date, *, dob: int | None = None, due: int | None = None) -> dict[str, Any]:
    infant: dict[str, Any] = {"given_name": "Alex", "nhs_number": VALID_NHS}
    if dob is not None:
        infant["date_of_birth"] = (today + timedelta(days=dob)).isoformat()
    if due is not None:
        infant["expected_due_date"] = (today + timedelta(days=due)).isoformat()
    return make_referral_body(
        infant=infant, consent__recorded_on=(today - timedelta(days=1)).isoformat()
    )


@pytest.mark.parametrize(
    ("dates", "field"),
    [
        pytest.param({"dob": 1}, "infant.date_of_birth", id="born-tomorrow"),
        pytest.param({"due": -15}, "infant.expected_due_date", id="due-15-days-ago"),
        pytest.param({"due": 295}, "infant.expected_due_date", id="due-in-295-days"),
    ],
)
async def test_date_outside_its_window_is_422(
    client: httpx.AsyncClient, auth, problem, service_today: date, dates: dict[str, int], field: str
) -> None:
    response = await submit(client, auth, _dated(service_today, **dates))
    problem(response, 422, fields=(field,))


@pytest.mark.parametrize(
    "dates",
    [
        pytest.param({"dob": 0}, id="born-today"),
        pytest.param({"due": -14}, id="due-14-days-ago"),
        pytest.param({"due": 294}, id="due-in-294-days"),
    ],
)
async def test_date_at_the_edge_of_its_window_is_accepted(
    client: httpx.AsyncClient, auth, service_today: date, dates: dict[str, int]
) -> None:
    body = _dated(service_today, **dates)
    response = await submit(client, auth, body)
    assert response.status_code == 201, response.text
    stored = response.json()["infant"]
    assert {k: stored[k] for k in body["infant"]} == body["infant"]


async def test_consent_recorded_in_the_future_is_422(
    client: httpx.AsyncClient, auth, problem, service_today: date
) -> None:
    tomorrow = (service_today + timedelta(days=1)).isoformat()
    response = await submit(client, auth, make_referral_body(consent__recorded_on=tomorrow))
    problem(response, 422, fields=("consent.recorded_on",))


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param("ox41aa", "OX4 1AA", id="lower-no-space"),
        pytest.param(" ox4 1aa ", "OX4 1AA", id="padded"),
        pytest.param("sw1a1aa", "SW1A 1AA", id="a9a-district"),
        pytest.param("gir0aa", "GIR 0AA", id="girobank"),
    ],
)
async def test_postcode_is_normalised(
    client: httpx.AsyncClient, auth, sent: str, stored: str
) -> None:
    response = await submit(client, auth, make_referral_body(postcode=sent))
    assert response.status_code == 201, response.text
    assert response.json()["postcode"] == stored
    read = await client.get(response.headers["location"], headers=auth())
    assert read.json()["postcode"] == stored


async def test_nhs_numbers_are_checked_and_normalised_to_ten_digits(
    client: httpx.AsyncClient, auth
) -> None:
    # 4010232137: 40+0+8+0+12+15+8+3+6 = 92; 92 % 11 = 4; 11 - 4 = 7.
    # 4000000020: 40 + 2*2 = 44; 44 % 11 = 0; 11 - 0 = 11, read as 0.
    body = make_referral_body(
        infant__nhs_number="943 476 5919",
        caregivers=[
            _caregiver(nhs_number="401-023-2137"),
            _caregiver(relationship="father", nhs_number="4000000020"),
        ],
    )
    response = await submit(client, auth, body)
    assert response.status_code == 201, response.text
    referral = response.json()
    assert referral["infant"]["nhs_number"] == VALID_NHS
    assert [c["nhs_number"] for c in referral["caregivers"]] == ["4010232137", "4000000020"]


async def test_sizes_at_their_limits_are_accepted(client: httpx.AsyncClient, auth) -> None:
    body = make_referral_body(
        referrer__name="n" * 100,
        concerns__description="d" * 4000,
        caregivers=[_caregiver()] * 6,
        concerns__duration_weeks=0,
    )
    response = await submit(client, auth, body)
    assert response.status_code == 201, response.text
    referral = response.json()
    assert len(referral["concerns"]["description"]) == 4000
    assert len(referral["caregivers"]) == 6


async def test_every_problem_in_a_body_is_named_at_once(
    client: httpx.AsyncClient, auth, problem
) -> None:
    body = make_referral_body(
        infant__nhs_number=BAD_CHECK_DIGIT_NHS, postcode="QX4 1AA", referrer__role="nurse"
    )
    problem(
        await submit(client, auth, body),
        422,
        fields=("infant.nhs_number", "postcode", "referrer.role"),
    )


async def test_diagnosis_is_optional(client: httpx.AsyncClient, auth) -> None:
    response = await submit(client, auth, make_referral_body(diagnosis=REMOVE))
    assert response.status_code == 201, response.text
    assert response.json()["diagnosis"] is None


async def test_a_name_python_would_strip_to_nothing_is_kept_and_reads_back(
    client: httpx.AsyncClient, auth
) -> None:
    # U+00A0 is no space to the schema's pattern, but str.strip() removes it.
    body = make_referral_body(referrer__name="\u00a0", caregivers__0__family_name=" \u00a0 ")
    created = await client.post("/v1/referrals", json=body, headers=auth())
    assert created.status_code == 201, created.text
    assert created.json()["referrer"]["name"] == "\u00a0"
    assert created.json()["caregivers"][0]["family_name"] == "\u00a0"
    read = await client.get(created.headers["location"], headers=auth())
    assert read.status_code == 200


# --- control characters -------------------------------------------------------------------

# C0 (NUL, BEL, ESC, form feed, vertical tab), DEL, C1 (NEL, CSI), bidirectional embedding,
# override and isolate characters.
CONTROLS = {
    "nul": "\x00",
    "bel": "\x07",
    "esc": "\x1b",
    "form-feed": "\x0c",
    "vertical-tab": "\x0b",
    "del": "\x7f",
    "nel": "\x85",
    "csi": "\x9b",
    "lre": "\u202a",
    "rlo": "\u202e",
    "lri": "\u2066",
    "pdi": "\u2069",
}
LINE_BREAKS_AND_TABS = {"lf": "\n", "crlf": "\r\n", "cr": "\r", "tab": "\t"}
# field path -> (override key for make_referral_body, a valid value to put the character in)
SINGLE_LINE_FIELDS = {
    "referrer.name": ("referrer__name", "Sam{}Carter"),
    "infant.given_name": ("infant__given_name", "Alex{}"),
    "caregivers[0].family_name": ("caregivers__0__family_name", "{}Example"),
    "referrer.email": ("referrer__email", "sam{}carter@nhs.example"),
    "referrer.phone": ("referrer__phone", "01865{}000000"),
    "postcode": ("postcode", "OX4{}1AA"),
}
FREE_TEXT_FIELDS = {
    "concerns.description": ("concerns__description", "Finds it hard{}to feel close."),
    "diagnosis": ("diagnosis", "None{}known."),
}


def _with_char(fields: dict[str, tuple[str, str]], char: str) -> dict[str, Any]:
    return make_referral_body(**{key: template.format(char) for key, template in fields.values()})


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS.keys())
async def test_a_control_character_is_422_naming_each_field(
    client: httpx.AsyncClient, auth, problem, char: str
) -> None:
    # One body with the character in every field: each must be named, and nothing else.
    fields = {**SINGLE_LINE_FIELDS, **FREE_TEXT_FIELDS}
    refusal = problem(await submit(client, auth, _with_char(fields, char)), 422)
    assert sorted(error["field"] for error in refusal["errors"]) == sorted(fields)
    assert char not in json.dumps(refusal, ensure_ascii=False)


@pytest.mark.parametrize("char", LINE_BREAKS_AND_TABS.values(), ids=LINE_BREAKS_AND_TABS.keys())
async def test_line_breaks_and_tabs_are_refused_in_single_line_fields(
    client: httpx.AsyncClient, auth, problem, char: str
) -> None:
    body = _with_char(SINGLE_LINE_FIELDS, char)
    refusal = problem(await submit(client, auth, body), 422)
    assert sorted(error["field"] for error in refusal["errors"]) == sorted(SINGLE_LINE_FIELDS)


async def test_line_breaks_and_tabs_are_kept_in_free_text(client: httpx.AsyncClient, auth) -> None:
    description = "First line.\nSecond line.\r\nThird,\tindented.\rLast."
    body = make_referral_body(concerns__description=description, diagnosis="A\n\tB")

    created = await submit(client, auth, body)
    assert created.status_code == 201, created.text
    read = await client.get(created.headers["location"], headers=auth())
    assert read.json()["concerns"]["description"] == description
    assert read.json()["diagnosis"] == "A\n\tB"


async def test_a_control_character_is_422_on_the_eligibility_check_too(
    client: httpx.AsyncClient, auth, problem
) -> None:
    body = make_referral_body(caregivers__0__given_name="Jo\u202e")
    response = await client.post("/v1/eligibility/check", json=body, headers=auth())
    problem(response, 422, fields=("caregivers[0].given_name",))


async def test_other_unicode_in_names_and_text_is_accepted(client: httpx.AsyncClient, auth) -> None:
    body = make_referral_body(
        referrer__name="Zoë O’Brien-Łukasz",
        infant__given_name="محمد",  # right-to-left script itself is fine; overrides are not
        concerns__description="Sleeps 2–3 h 😴",
    )
    created = await submit(client, auth, body)
    assert created.status_code == 201, created.text
    assert created.json()["infant"]["given_name"] == "محمد"


@pytest.mark.parametrize("field", FREE_TEXT_FIELDS)
async def test_a_lone_surrogate_in_free_text_is_422_not_500(
    client: httpx.AsyncClient, auth, problem, field: str
) -> None:
    # Only JSON's \u escape can carry one; it is no character and cannot be sent back as UTF-8.
    override, template = FREE_TEXT_FIELDS[field]
    content = json.dumps(make_referral_body(**{override: template.format("\udfff")}))
    assert "\\udfff" in content
    response = await client.post(
        "/v1/referrals", content=content, headers={**auth(), "Content-Type": "application/json"}
    )
    problem(response, 422, fields=(field,))
