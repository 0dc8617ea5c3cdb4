"""A database that refuses us (wrong database name or role) is a 503 with Retry-After, not a
500; readiness says "refused"; and the log names the cause without the names themselves."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy.engine import make_url

from api.app import create_app
from tests.conftest import make_settings
from tests.factories import make_referral_body

# Refusals come from a database server; SQLite has none.
pytestmark = pytest.mark.postgres_only

MISSING_DATABASE = "referral_no_such_database"
MISSING_ROLE = "referral_no_such_role"


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"database": MISSING_DATABASE}, "database does not exist"),
        # With trust authentication a missing role is SQLSTATE 28000 "role does not exist".
        ({"username": MISSING_ROLE}, "authentication failed"),
    ],
    ids=["wrong-database", "wrong-role"],
)
async def test_refused_connection_is_503_and_logged_by_cause(
    database_url: str,
    signing_key,
    auth,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    cause: str,
) -> None:
    url = make_url(database_url).set(**change).render_as_string(hide_password=False)
    app = create_app(make_settings(url, signing_key.public_file))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        submitted = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
        listed = await client.get("/v1/referrals", headers=auth())
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")

    for response in (submitted, listed):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["status"] == 503
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "database": "refused", "schema": None}
    assert int(ready.headers["retry-after"]) > 0
    assert live.status_code == 200

    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    refused = f"database refused the connection: {cause}"
    refusals = [entry for entry in logged if entry["message"].startswith(refused)]
    # One from each request and one from the readiness check.
    assert {entry["logger"] for entry in refusals} == {"api.problems", "service.core.health"}
    assert all(entry["level"] == "error" for entry in refusals)
    everything = json.dumps(logged) + submitted.text + listed.text + ready.text
    assert MISSING_DATABASE not in everything
    assert MISSING_ROLE not in everything
