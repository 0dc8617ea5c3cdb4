"""Every error status as problem+json, with no stack trace and no personal data in it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from tests.conftest import make_settings
from tests.factories import make_referral_body
from tests.intake_patch import replace_intake

JSON = {"Content-Type": "application/json"}
CHUNK = 64 * 1024
STREAM_CHUNKS = 800  # 800 x 64 KiB = 50 MiB


BODY_PATHS = ("/v1/referrals", "/v1/eligibility/check")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"referrer": {"name": ', id="truncated"),
        pytest.param(b"{'referrer': 1}", id="single-quotes"),
        pytest.param(b"not json at all", id="text"),
    ],
)
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, auth, problem, content: bytes
) -> None:
    for path in BODY_PATHS:
        response = await client.post(path, content=content, headers={**auth(), **JSON})
        problem(response, 400)


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("application/xml", id="xml"),
        pytest.param(None, id="none"),
    ],
)
async def test_wrong_media_type_is_415(
    client: httpx.AsyncClient, auth, problem, content_type: str | None
) -> None:
    headers = auth()
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = json.dumps(make_referral_body()).encode()
    response = await client.post("/v1/referrals", content=body, headers=headers)
    problem(response, 415)
    listed = await client.get("/v1/referrals", headers=auth())
    assert listed.json()["items"] == []


async def test_json_with_charset_is_accepted(client: httpx.AsyncClient, auth) -> None:
    body = json.dumps(make_referral_body()).encode()
    headers = {**auth(), "Content-Type": "application/json; charset=utf-8"}
    response = await client.post("/v1/referrals", content=body, headers=headers)
    assert response.status_code == 201, response.text


async def test_body_over_the_limit_with_content_length_is_413(
    client: httpx.AsyncClient, auth, problem
) -> None:
    # Valid JSON, so only the size can be refused; 64 KiB + 1 byte.
    body = json.dumps(make_referral_body()).encode()
    body = body[:-1] + b" " * (64 * 1024 + 1 - len(body)) + b"}"
    assert len(body) == 64 * 1024 + 1
    response = await client.post("/v1/referrals", content=body, headers={**auth(), **JSON})
    problem(response, 413)
    listed = await client.get("/v1/referrals", headers=auth())
    assert listed.json()["items"] == []


async def test_body_at_the_limit_is_not_refused_for_size(client: httpx.AsyncClient, auth) -> None:
    body = json.dumps(make_referral_body()).encode()
    body = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(body) == 64 * 1024
    response = await client.post("/v1/referrals", content=body, headers={**auth(), **JSON})
    assert response.status_code == 201, response.text


async def test_streamed_body_over_the_limit_is_413_without_reading_it_all(
    client: httpx.AsyncClient, auth, problem
) -> None:
    sent = 0

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"description": "'
        for _ in range(STREAM_CHUNKS):
            sent += 1
            yield b"x" * CHUNK

    response = await client.post(
        "/v1/referrals", content=fifty_megabytes(), headers={**auth(), **JSON}
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    problem(response, 413)
    assert sent < STREAM_CHUNKS, "the whole 50 MiB body was read"
    assert sent <= 16, f"{sent} chunks of 64 KiB read before refusing"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/v1/nothing-here", id="unknown-path"),
        pytest.param("GET", "/v2/referrals", id="unknown-version"),
        pytest.param("POST", "/v1/referrals/extra/segments", id="too-deep"),
    ],
)
async def test_unknown_route_is_404(
    client: httpx.AsyncClient, auth, problem, method: str, path: str
) -> None:
    problem(await client.request(method, path, headers=auth()), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("DELETE", "/v1/pathway", {"GET"}, id="delete-pathway"),
        pytest.param("PUT", "/v1/referrals", {"GET", "POST"}, id="put-referrals"),
        pytest.param("GET", "/v1/eligibility/check", {"POST"}, id="get-eligibility-check"),
    ],
)
async def test_wrong_method_is_405(
    client: httpx.AsyncClient, auth, problem, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path, headers=auth())
    problem(response, 405)
    # RFC 9110 §15.5.6: a 405 carries Allow, naming every method the path accepts (for
    # /v1/referrals that is two routes: GET and POST).
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert listed == allowed


async def test_referral_id_that_is_not_a_uuid_is_422(
    client: httpx.AsyncClient, auth, problem
) -> None:
    response = await client.get("/v1/referrals/not-a-uuid", headers=auth())
    problem(response, 422, fields=("referral_id",))


async def test_missing_referral_is_404(client: httpx.AsyncClient, auth, problem) -> None:
    missing = uuid.uuid4()
    problem(await client.get(f"/v1/referrals/{missing}", headers=auth()), 404)
    problem(await client.get(f"/v1/referrals/{missing}/status", headers=auth()), 404)


@pytest.fixture
async def unreachable_client(signing_key) -> AsyncIterator[httpx.AsyncClient]:
    """The app against a PostgreSQL port that refuses connections (no lifespan: it would
    not migrate PostgreSQL anyway)."""
    settings = make_settings("postgresql+asyncpg://u@127.0.0.1:1/x", signing_key.public_file)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await app.state.services.engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/v1/referrals", make_referral_body(), id="submit"),
        pytest.param("POST", "/v1/eligibility/check", make_referral_body(), id="check"),
        pytest.param("GET", "/v1/referrals", None, id="list"),
        pytest.param("GET", f"/v1/referrals/{uuid.uuid4()}", None, id="read"),
    ],
)
async def test_database_unreachable_is_503_with_retry_after(
    unreachable_client: httpx.AsyncClient,
    auth,
    problem,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    response = await unreachable_client.request(method, path, json=body, headers=auth())
    problem(response, 503)
    assert response.headers["retry-after"].isdigit()
    assert int(response.headers["retry-after"]) > 0
    assert "127.0.0.1" not in response.text  # no connection details either


async def test_readiness_is_503_when_the_database_is_unreachable(
    unreachable_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_client.get("/health/ready")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0


# Distinctive values that must never come back in an error body.
NAME = "Quintavius"
SURNAME = "Marchbanks-Oyelaran"
NHS = "9434765918"  # fails Modulus 11 (the check digit should be 9)
EMAIL = "quintavius.marchbanks@@example"
PHONE = "07700-QUINT"
DESCRIPTION = "Zanzibar-Fothergill lives with"


@pytest.mark.parametrize(
    ("overrides", "secrets"),
    [
        pytest.param(
            {
                "infant__given_name": NAME,
                "infant__family_name": SURNAME,
                "infant__nhs_number": NHS,
            },
            (NAME, SURNAME, NHS),
            id="bad-nhs-number",
        ),
        pytest.param(
            {
                "caregivers": [
                    {
                        "given_name": NAME,
                        "family_name": SURNAME,
                        "relationship": "mother",
                        "nhs_number": NHS,
                        "phone": PHONE,
                    }
                ]
            },
            (NAME, SURNAME, NHS, PHONE),
            id="bad-caregiver",
        ),
        pytest.param(
            {"referrer__name": NAME * 11, "referrer__email": EMAIL},
            (NAME, EMAIL),
            id="long-name-bad-email",
        ),
        pytest.param({"postcode": "QX9 9QZ"}, ("QX9", "9QZ"), id="bad-postcode"),
        pytest.param(
            {"concerns__description": DESCRIPTION + "x" * 4000}, (DESCRIPTION,), id="long-text"
        ),
        pytest.param(
            {"infant__maiden_name": SURNAME, "diagnosis": 12345678},
            (SURNAME, "12345678"),
            id="unknown-field-and-wrong-type",
        ),
    ],
)
async def test_error_bodies_carry_no_personal_data(
    client: httpx.AsyncClient,
    auth,
    problem,
    caplog,
    overrides: dict[str, Any],
    secrets: tuple[str, ...],
) -> None:
    for path in BODY_PATHS:
        response = await client.post(path, json=make_referral_body(**overrides), headers=auth())
        problem(response, 422)
        for secret in secrets:
            assert secret not in response.text, path
    logged = "\n".join(repr(vars(record)) for record in caplog.records)
    assert "api.access" in logged  # the control: requests were logged
    for secret in secrets:
        assert secret not in logged


async def test_malformed_json_error_carries_no_personal_data(
    client: httpx.AsyncClient, auth, problem
) -> None:
    content = f'{{"infant": {{"given_name": "{NAME}", "nhs_number": "{NHS}"'.encode()
    response = await client.post("/v1/referrals", content=content, headers={**auth(), **JSON})
    problem(response, 400)
    assert NAME not in response.text and NHS not in response.text


async def test_a_crash_is_a_bare_500_problem(
    client: httpx.AsyncClient, auth, problem, monkeypatch, caplog
) -> None:
    async def crash(_request: object) -> Any:
        raise RuntimeError(f"lookup failed for {NAME} {SURNAME} ({NHS})")

    replace_intake(monkeypatch, crash)
    response = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    problem(response, 500)
    for secret in (NAME, SURNAME, NHS, "RuntimeError", "lookup failed"):
        assert secret not in response.text
    # The crash is logged, by type and place only.
    logged = [repr(vars(record)) for record in caplog.records]
    assert any("RuntimeError" in line for line in logged)
    assert not any(NAME in line or NHS in line for line in logged)
    listed = await client.get("/v1/referrals", headers=auth())
    assert listed.json()["items"] == []


async def test_thousands_of_problems_list_fifty_and_count_the_rest(
    client: httpx.AsyncClient, auth, problem
) -> None:
    body = {**make_referral_body(), **{f"k{n:04}": 0 for n in range(5000)}}
    response = await client.post("/v1/referrals", json=body, headers=auth())

    refusal = problem(response, 422)
    assert len(refusal["errors"]) == 50
    assert refusal["errors_omitted"] == 4950
    assert "4950 more problems" in refusal["detail"]
    assert len(response.content) < 8 * 1024  # was 254 KB


async def test_up_to_fifty_problems_are_all_listed_with_no_count(
    client: httpx.AsyncClient, auth, problem
) -> None:
    body = {**make_referral_body(), **{f"k{n:04}": 0 for n in range(50)}}
    refusal = problem(await client.post("/v1/referrals", json=body, headers=auth()), 422)
    assert len(refusal["errors"]) == 50
    assert "errors_omitted" not in refusal
    assert refusal["detail"] == "The request is not valid."
