"""Audit events stored before migration 0007 (no correlation_id, no checkpoints) verify byte for
byte after it, incrementally and in full, and read through the API with hashes that recompute."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from api.app import create_app
from service.audit import verification
from service.core.database import create_engine, make_sessionmaker
from service.core.migrate import upgrade
from service.core.unit_of_work import UnitOfWork
from tests.conftest import ALL_SCOPES, SigningKey, make_settings
from tests.service.audit.test_audit_chain import document_of, recompute_hash

GENESIS = "0" * 64
WRITTEN = datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC)
# The tables exactly as release 0006 had them: no correlation_id column to write.
EVENTS_0006 = sa.table(
    "audit_events",
    *(
        sa.column(name)
        for name in (
            "seq chain chain_seq occurred_at actor_sub actor_org action resource_type "
            "resource_id outcome request_id prev_hash hash"
        ).split()
    ),
    sa.column("details", sa.JSON()),
)
HEADS = sa.table(
    "audit_chain_heads",
    sa.column("chain"),
    sa.column("chain_seq"),
    sa.column("seq"),
    sa.column("hash"),
)


@pytest.fixture
async def empty_database_url(
    database_url: str, postgres_databases: Any, tmp_path: Path
) -> AsyncIterator[str]:
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'before-0007.db'}"
        return
    url = await postgres_databases.new_empty()
    yield url
    await postgres_databases.drop(url)


async def _next_seq(conn: AsyncConnection) -> int:
    if conn.dialect.name == "postgresql":
        query = "SELECT nextval(pg_get_serial_sequence('audit_events', 'seq'))"
    else:
        query = "SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events"
    return int((await conn.execute(sa.text(query))).scalar_one())


async def store_as_release_0006_did(url: str, per_chain: dict[int, int]) -> list[dict[str, Any]]:
    """Migrate to 0006 and append events to chains as that release did, hashed without any
    correlation_id (the hash computed here, independently of service.audit)."""
    engine = create_async_engine(url)
    stored: list[dict[str, Any]] = []
    try:
        await upgrade(engine, "0006")
        async with engine.begin() as conn:
            for chain, count in per_chain.items():
                prev = GENESIS
                for position in range(1, count + 1):
                    row: dict[str, Any] = {
                        "seq": await _next_seq(conn),
                        "chain": chain,
                        "chain_seq": position,
                        "occurred_at": WRITTEN + timedelta(seconds=len(stored)),
                        "actor_sub": "hv-system",
                        "actor_org": "RX1",
                        "action": "referral.listed",
                        "resource_type": "referral",
                        "resource_id": None,
                        "outcome": "success",
                        "request_id": f"partner-chosen-{len(stored)}",
                        "details": {"returned": position},
                        "prev_hash": prev,
                    }
                    row["hash"] = recompute_hash(document_of(row))
                    await conn.execute(sa.insert(EVENTS_0006).values(**row))
                    stored.append(row)
                    prev = row["hash"]
                await conn.execute(
                    sa.update(HEADS)
                    .where(HEADS.c.chain == chain)
                    .values(chain_seq=count, seq=stored[-1]["seq"], hash=prev)
                )
        await upgrade(engine)
    finally:
        await engine.dispose()
    return stored


async def test_events_from_before_0007_verify_and_read_after_it(
    empty_database_url: str, signing_key: SigningKey, auth: Any
) -> None:
    stored = await store_as_release_0006_did(empty_database_url, {0: 4, 3: 2})
    settings = make_settings(empty_database_url, signing_key.public_file)

    engine = create_engine(settings)
    try:
        async with UnitOfWork(make_sessionmaker(engine)).begin() as session:
            full = await verification.verify(session)
    finally:
        await engine.dispose()
    assert (full.valid, full.events_checked, full.full) == (True, 6, True), full.problem

    app = create_app(settings)
    auditor = auth(org="AUD01", scopes=ALL_SCOPES)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = (await client.get("/v1/audit-events/verify", headers=auditor)).json()
            page = await client.get("/v1/audit-events", headers=auditor)
            listed = await client.get(
                "/v1/referrals", headers={**auth(), "X-Request-ID": "after-0007"}
            )
            second = (await client.get("/v1/audit-events/verify", headers=auditor)).json()
            everything = await client.get(
                "/v1/audit-events", params={"limit": 100}, headers=auditor
            )

    assert (first["valid"], first["events_checked"]) == (True, 6), first["problem"]
    assert listed.status_code == 200
    old = [e for e in page.json()["items"] if e["seq"] in {r["seq"] for r in stored}]
    assert len(old) == 6
    for event in old:
        assert "correlation_id" not in event
        assert recompute_hash(event) == event["hash"]
    assert {e["hash"] for e in old} == {r["hash"] for r in stored}

    # Only what came after the first verification: its own event, the audit read, the listing.
    assert (second["valid"], second["events_checked"]) == (True, 3), second["problem"]
    assert second["events_before_checkpoints"] == 6
    new = [e for e in everything.json()["items"] if e.get("correlation_id") == "after-0007"]
    assert len(new) == 1 and recompute_hash(new[0]) == new[0]["hash"]
