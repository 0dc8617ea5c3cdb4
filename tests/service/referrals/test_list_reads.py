"""Lists read summary columns only, and their cursor seeks the index on both databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.models import REFERRALS
from service.referrals import repository

RECEIVED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_async_engine(database_url)
    yield made
    await made.dispose()


def odd_referral(**values: Any) -> dict[str, Any]:
    """A stored referral whose documents no current schema would accept."""
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "reference": "PIR-ODD0-ROW1",
        "org": "RX1",
        "submitted_by": "hv-system",
        "received_at": RECEIVED,
        "updated_at": RECEIVED,
        "status": "awaiting_triage",
        "outcome": "step_up",
        "priority": "urgent",
        "eligible": True,
        "provisional": True,
        "safeguarding_alert": True,
        "ruleset_id": "default",
        "ruleset_version": "0.9.0",
        "ruleset_sha256": "0" * 64,
        "payload": {"written_by": "a release we no longer have", "infant": 7},
        "payload_version": 0,  # older than any upcaster knows: reading it whole would fail
        "decision": {"unexpected": ["shape"]},
        "version": 1,
    }
    row.update(values)
    return row


async def test_a_referral_with_an_odd_payload_still_lists(
    client: httpx.AsyncClient, auth: Any, engine: AsyncEngine
) -> None:
    row = odd_referral()
    async with engine.begin() as connection:
        await connection.execute(insert(REFERRALS).values(**row))

    response = await client.get("/v1/referrals", headers=auth())

    assert response.status_code == 200, response.text
    (item,) = response.json()["items"]
    assert item["id"] == row["id"] and item["reference"] == "PIR-ODD0-ROW1"
    assert (item["status"], item["outcome"], item["priority"]) == (
        "awaiting_triage",
        "step_up",
        "urgent",
    )
    assert item["safeguarding_alert"] is True and item["provisional"] is True
    assert "payload" not in item and "infant" not in item
    # The team's worklist order reads the same columns.
    worklist = await client.get(
        "/v1/referrals",
        params={"sort": "triage"},
        headers=auth(org="PIT01", scopes=("referrals:triage",)),
    )
    assert worklist.status_code == 200, worklist.text
    assert [i["id"] for i in worklist.json()["items"]] == [row["id"]]


async def test_a_deep_cursor_seeks_the_index(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(REFERRALS),
            [
                odd_referral(
                    id=str(uuid.uuid4()),
                    reference=f"PIR-ODD0-{n:04d}",
                    org="RX1" if n % 2 else "RTH",
                    received_at=RECEIVED - timedelta(minutes=n),
                    updated_at=RECEIVED - timedelta(minutes=n),
                )
                for n in range(40)
            ],
        )
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    before = (RECEIVED - timedelta(minutes=20), str(uuid.UUID(int=0)))
    event.listen(Engine, "before_cursor_execute", record)
    try:
        async with engine.connect() as connection:
            page = await repository.newest_first(
                connection, org="RX1", filters=repository.ListFilters(), before=before, limit=5
            )
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    # Strictly before the cursor, newest first, the organisation's only.
    assert [p.received_at.replace(tzinfo=UTC) for p in page] == [
        RECEIVED - timedelta(minutes=n) for n in (21, 23, 25, 27, 29)
    ]
    assert {p.org for p in page} == {"RX1"}

    statement, params = sent[-1]
    assert "payload" not in statement and "decision" not in statement
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                str(r[-1])
                for r in await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            )
            assert (
                "USING INDEX ix_referrals_org_received (org=? AND (received_at,id)<(?,?))" in plan
            )
        else:
            # A table this small would be scanned whatever the query: ask for the index path
            # and check the cursor is one of its bounds, not a filter applied after it.
            await connection.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(
                str(r[0]) for r in await connection.exec_driver_sql(f"EXPLAIN {statement}", params)
            )
            assert "Index Scan Backward using ix_referrals_org_received" in plan
            assert "Index Cond: (((org)::text = 'RX1'::text) AND (ROW(received_at" in plan
            assert "Filter:" not in plan
