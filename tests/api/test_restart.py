"""Referrals survive a restart of the process on the embedded SQLite database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from tests.conftest import make_settings
from tests.factories import make_referral_body


async def _with_app(database: Path, signing_key: Any, work: Any) -> Any:
    """Start an app on `database` (its lifespan migrates SQLite), run `work`, shut it down."""
    settings = make_settings(f"sqlite+aiosqlite:///{database}", signing_key.public_file)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await work(http)


async def test_referrals_survive_a_restart(tmp_path: Path, signing_key, auth) -> None:
    database = tmp_path / "var" / "referrals.db"
    assert not database.exists()
    body = make_referral_body()

    async def submit(http: httpx.AsyncClient) -> dict[str, Any]:
        response = await http.post(
            "/v1/referrals", json=body, headers={**auth(), "Idempotency-Key": "restart"}
        )
        assert response.status_code == 201, response.text
        return response.json()

    created = await _with_app(database, signing_key, submit)
    assert database.exists()

    async def read_back(http: httpx.AsyncClient) -> None:
        read = await http.get(f"/v1/referrals/{created['id']}", headers=auth())
        assert read.status_code == 200, read.text
        assert read.json() == created
        listed = await http.get("/v1/referrals", headers=auth())
        assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
        # The idempotency record survived with it: a retry after the restart replays.
        retry = await http.post(
            "/v1/referrals", json=body, headers={**auth(), "Idempotency-Key": "restart"}
        )
        assert retry.status_code == 201
        assert retry.json()["id"] == created["id"]

    await _with_app(database, signing_key, read_back)
