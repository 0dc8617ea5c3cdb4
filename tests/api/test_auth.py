"""Bearer tokens end to end: each refusal is a 401 or 403 problem with WWW-Authenticate."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from tests.conftest import AUDIENCE, ISSUER
from tests.factories import make_referral_body

CHECK_PATH = "/v1/eligibility/check"
INVALID_TOKEN = 'error="invalid_token"'
INSUFFICIENT_SCOPE = 'error="insufficient_scope"'


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(**overrides: Any) -> dict[str, Any]:
    """A good claim set; an override of None removes the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "hv-system",
        "org": "RX1",
        "scope": "referrals:submit referrals:read",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


@pytest.fixture(scope="module")
def other_private_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _bad_token(kind: str, signing_key: Any, other_private_pem: bytes) -> str:
    def signed(claims: dict[str, Any], key: bytes = signing_key.private_pem) -> str:
        return str(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "dev"}))

    hour_ago = int(time.time()) - 3600
    match kind:
        case "garbage":
            return "this-is-not-a-jwt"
        case "three-garbage-parts":
            return "abc.def.ghi"
        case "alg-none":
            return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
        case "alg-none-with-signature":
            return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.c2ln"
        case "expired":
            return signed(_claims(iat=hour_ago - 600, nbf=hour_ago - 600, exp=hour_ago))
        case "wrong-audience":
            return signed(_claims(aud="someone-else"))
        case "wrong-issuer":
            return signed(_claims(iss="https://evil.example"))
        case "missing-org":
            return signed(_claims(org=None))
        case "missing-exp":
            return signed(_claims(exp=None))
        case "other-key":
            return signed(_claims(), other_private_pem)
        case "tampered-payload":
            header, _, signature = signed(_claims()).split(".")
            return f"{header}.{_b64(_claims(org='A81001'))}.{signature}"
    raise AssertionError(kind)


TOKEN_ATTACKS = [
    "garbage",
    "three-garbage-parts",
    "alg-none",
    "alg-none-with-signature",
    "expired",
    "wrong-audience",
    "wrong-issuer",
    "missing-org",
    "missing-exp",
    "other-key",
    "tampered-payload",
]


def assert_unauthorised(problem: Any, response: httpx.Response) -> None:
    problem(response, 401)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert INVALID_TOKEN in challenge


@pytest.mark.parametrize("kind", TOKEN_ATTACKS)
async def test_bad_token_is_401(
    client: httpx.AsyncClient, problem, signing_key, other_private_pem: bytes, kind: str
) -> None:
    token = _bad_token(kind, signing_key, other_private_pem)
    headers = {"Authorization": f"Bearer {token}"}
    submitted = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
    assert_unauthorised(problem, submitted)
    assert token not in submitted.text
    assert_unauthorised(problem, await client.get("/v1/referrals", headers=headers))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
        pytest.param({"Authorization": "Bearer "}, id="bearer-blank"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
    ],
)
async def test_no_token_is_401(client: httpx.AsyncClient, problem, headers: dict[str, str]) -> None:
    submitted = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
    assert_unauthorised(problem, submitted)
    checked = await client.post(CHECK_PATH, json=make_referral_body(), headers=headers)
    assert_unauthorised(problem, checked)
    read = await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=headers)
    assert_unauthorised(problem, read)


async def test_the_same_token_signed_properly_is_accepted(
    client: httpx.AsyncClient, signing_key
) -> None:
    # The control for the attacks above: _claims() and the test key make a good token.
    token = jwt.encode(_claims(), signing_key.private_pem, algorithm="RS256")
    response = await client.get("/v1/referrals", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("scopes", "method", "path"),
    [
        pytest.param(("referrals:read",), "POST", "/v1/referrals", id="read-cannot-submit"),
        pytest.param(("referrals:read",), "POST", "/v1/eligibility/check", id="read-cannot-check"),
        pytest.param(("referrals:submit",), "GET", "/v1/referrals", id="submit-cannot-list"),
        pytest.param(
            ("referrals:submit",),
            "GET",
            "/v1/referrals/00000000-0000-4000-8000-000000000000",
            id="submit-cannot-read",
        ),
        pytest.param(("audit:read",), "GET", "/v1/referrals", id="audit-cannot-list"),
        pytest.param((), "POST", "/v1/referrals", id="no-scopes"),
        pytest.param(
            ("referrals:submit", "referrals:read"),
            "GET",
            "/v1/audit-events",
            id="partner-cannot-read-audit",
        ),
    ],
)
async def test_missing_scope_is_403(
    client: httpx.AsyncClient,
    auth,
    problem,
    scopes: tuple[str, ...],
    method: str,
    path: str,
) -> None:
    body = make_referral_body() if method == "POST" else None
    response = await client.request(method, path, json=body, headers=auth(scopes=scopes))
    problem(response, 403)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and INSUFFICIENT_SCOPE in challenge


async def test_refused_submission_stores_nothing(client: httpx.AsyncClient, auth, problem) -> None:
    refused = await client.post(
        "/v1/referrals", json=make_referral_body(), headers=auth(scopes=("referrals:read",))
    )
    problem(refused, 403)
    listed = await client.get("/v1/referrals", headers=auth(scopes=("referrals:triage",)))
    assert listed.json()["items"] == []


async def test_pathway_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/pathway")
    assert response.status_code == 200
    pathway = response.json()
    assert set(pathway["ruleset"]) == {"id", "version", "sha256"}
    assert pathway["ruleset"]["id"] == "default"
    assert len(pathway["ruleset"]["sha256"]) == 64
    for part in ("criteria", "outcomes", "codes", "glossary"):
        assert pathway[part], part


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200
