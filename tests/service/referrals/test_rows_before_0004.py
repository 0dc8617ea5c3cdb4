"""Referrals and idempotency keys stored before migration 0004 stay readable and replayable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from api.schemas.referrals import ReferralCreate
from api.views import submission_of
from eligibility import default_ruleset, evaluate
from service.core.canonical import canonical_json, sha256_hex
from service.core.migrate import upgrade
from service.models import IDEMPOTENCY_KEYS, REFERRALS
from tests.conftest import SigningKey, make_settings
from tests.factories import make_referral_body, today

RECEIVED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
async def empty_database_url(
    database_url: str, postgres_databases: Any, tmp_path: Path
) -> AsyncIterator[str]:
    """A database with no schema, on the backend `database_url` is on."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'before-0004.db'}"
        return
    url = await postgres_databases.new_empty()
    yield url
    await postgres_databases.drop(url)


async def store_as_release_0003_did(url: str, body: dict[str, Any]) -> str:
    """Migrate to 0003 and write a referral and its key exactly as that release wrote them:
    no payload_version, no stored response."""
    engine = create_async_engine(url)
    submission = submission_of(ReferralCreate.model_validate(body))
    decision = evaluate(submission.facts, default_ruleset(), today())
    referral_id = str(uuid.uuid4())
    try:
        await upgrade(engine, "0003")
        async with engine.begin() as connection:
            await connection.execute(
                insert(REFERRALS).values(
                    id=referral_id,
                    reference="PIR-OLD0-ROW1",
                    org="RX1",
                    submitted_by="hv-system",
                    received_at=RECEIVED,
                    updated_at=RECEIVED,
                    status="awaiting_triage",
                    outcome=decision.outcome,
                    priority=decision.priority,
                    eligible=decision.eligible,
                    provisional=True,
                    safeguarding_alert=decision.safeguarding_alert,
                    ruleset_id=decision.ruleset.id,
                    ruleset_version=decision.ruleset.version,
                    ruleset_sha256=decision.ruleset.sha256,
                    payload=submission.payload,
                    decision=decision.to_dict(),
                )
            )
            await connection.execute(
                insert(IDEMPOTENCY_KEYS).values(
                    org="RX1",
                    key="sent-before-0004",
                    request_sha256=sha256_hex(canonical_json(submission.payload)),
                    referral_id=referral_id,
                    created_at=datetime.now(UTC),
                )
            )
        await upgrade(engine)
    finally:
        await engine.dispose()
    return referral_id


async def test_rows_from_before_0004_read_and_replay_after_it(
    empty_database_url: str, signing_key: SigningKey, auth: Any
) -> None:
    body = make_referral_body(infant__given_name="Distinctive-Oldrow")
    referral_id = await store_as_release_0003_did(empty_database_url, body)

    app = create_app(make_settings(empty_database_url, signing_key.public_file))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            read = await client.get(f"/v1/referrals/{referral_id}", headers=auth())
            status = await client.get(f"/v1/referrals/{referral_id}/status", headers=auth())
            listed = await client.get("/v1/referrals", headers=auth())
            replay = await client.post(
                "/v1/referrals",
                json=body,
                headers={**auth(), "Idempotency-Key": "sent-before-0004"},
            )
    assert read.status_code == 200, read.text
    assert read.json()["infant"]["given_name"] == "Distinctive-Oldrow"
    assert read.json()["reference"] == "PIR-OLD0-ROW1"
    assert status.status_code == 200 and status.json()["status"] == "awaiting_triage"
    assert [item["id"] for item in listed.json()["items"]] == [referral_id]
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == referral_id
    assert replay.json() == read.json()
