"""Many writers at once, in one process and across two app instances (two engines, two pools),
leave audit chains that verify. PostgreSQL only: that is where appends run in parallel (SQLite
serialises every writer with BEGIN IMMEDIATE)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from service.audit import chain as audit
from service.audit import verification
from service.core.database import create_engine, make_sessionmaker
from service.core.settings import Settings
from service.core.unit_of_work import UnitOfWork
from service.models import AUDIT_CHAIN_HEADS, AUDIT_EVENTS
from tests.conftest import ALL_SCOPES
from tests.factories import make_referral_body

pytestmark = pytest.mark.postgres_only

GENESIS = "0" * 64
REQUESTS = 200


@asynccontextmanager
async def second_instance(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another create_app() on the same database: its own engine and connection pool."""
    other = create_app(settings)
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other), base_url="http://testserver"
        ) as client,
    ):
        yield client


async def raw(database_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            events = (
                (await conn.execute(select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq)))
                .mappings()
                .all()
            )
            heads = (
                (await conn.execute(select(AUDIT_CHAIN_HEADS).order_by(AUDIT_CHAIN_HEADS.c.chain)))
                .mappings()
                .all()
            )
            return [dict(e) for e in events], [dict(h) for h in heads]
    finally:
        await engine.dispose()


async def verify(settings: Settings) -> verification.Verification:
    engine = create_engine(settings)
    try:
        async with UnitOfWork(make_sessionmaker(engine)).begin() as session:
            return await verification.verify(session)
    finally:
        await engine.dispose()


async def test_parallel_requests_from_two_instances_leave_chains_that_verify(
    settings: Settings,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    database_url: str,
) -> None:
    headers = auth(scopes=ALL_SCOPES)
    async with second_instance(settings) as other:

        async def one(i: int) -> int:
            http = client if i % 2 else other
            if i % 4 < 2:
                response = await http.post(
                    "/v1/referrals", json=make_referral_body(), headers=headers
                )
            elif i % 4 == 2:
                response = await http.get("/v1/referrals?limit=1", headers=headers)
            else:
                response = await http.get("/v1/audit-events?limit=1", headers=headers)
            return response.status_code

        statuses = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    assert Counter(statuses) == {201: REQUESTS // 2, 200: REQUESTS // 2}

    result = await verify(settings)
    assert result.valid, result.problem
    assert result.events_checked == REQUESTS

    events, heads = await raw(database_url)
    assert len(events) == REQUESTS
    assert len({e["seq"] for e in events}) == REQUESTS
    positions = [(e["chain"], e["chain_seq"]) for e in events]
    assert len(set(positions)) == REQUESTS
    assert Counter(e["action"] for e in events) == {
        "referral.created": REQUESTS // 2,
        "referral.listed": REQUESTS // 4,
        "audit.read": REQUESTS // 4,
    }

    by_chain: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_chain.setdefault(event["chain"], []).append(event)
    assert len(by_chain) > 1, "parallel appends should spread over several chains"
    assert set(by_chain) <= set(range(audit.AUDIT_CHAINS))
    head_of = {h["chain"]: h for h in heads}
    for chain, members in by_chain.items():
        members.sort(key=lambda e: e["chain_seq"])
        assert [e["chain_seq"] for e in members] == list(range(1, len(members) + 1))
        assert members[0]["prev_hash"] == GENESIS
        for before, after in zip(members, members[1:], strict=False):
            assert after["prev_hash"] == before["hash"]
            assert after["seq"] > before["seq"]
        assert head_of[chain]["chain_seq"] == members[-1]["chain_seq"]
        assert head_of[chain]["hash"] == members[-1]["hash"]
        assert head_of[chain]["seq"] == members[-1]["seq"]
    for chain in set(range(audit.AUDIT_CHAINS)) - set(by_chain):
        assert head_of[chain]["chain_seq"] == 0 and head_of[chain]["hash"] == GENESIS


async def test_verification_during_parallel_writes_reports_a_valid_trail(
    settings: Settings,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
) -> None:
    """Verifying while other requests append must never report tampering that did not happen."""
    headers = auth(scopes=ALL_SCOPES)
    async with second_instance(settings) as other:

        async def write(i: int) -> None:
            http = client if i % 2 else other
            created = await http.post("/v1/referrals", json=make_referral_body(), headers=headers)
            assert created.status_code == 201, created.text

        async def check() -> dict[str, Any]:
            verified = await other.get("/v1/audit-events/verify", headers=headers)
            assert verified.status_code == 200, verified.text
            body: dict[str, Any] = verified.json()
            return body

        work: list[Any] = []
        for i in range(120):
            work.append(write(i))
            if i % 10 == 5:
                work.append(check())
        results = await asyncio.gather(*work)
    reports = [r for r in results if isinstance(r, dict)]
    assert len(reports) == 12
    assert [r["problem"] for r in reports if not r["valid"]] == []


async def test_verification_is_not_fooled_by_an_append_committed_while_it_reads(
    settings: Settings,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same race, made certain: another instance commits an event after verification has
    read the heads and before it reads the events (READ COMMITTED gives each statement its own
    snapshot). The trail is intact, so verification must say so."""
    headers = auth(scopes=ALL_SCOPES)
    for _ in range(4):
        created = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
        assert created.status_code == 201
    original = audit.read_heads
    async with second_instance(settings) as other:
        injected: list[int] = []

        async def read_heads_then_another_instance_writes(session: Any) -> list[audit.ChainHead]:
            heads = await original(session)
            if not injected:
                created = await other.post(
                    "/v1/referrals", json=make_referral_body(), headers=headers
                )
                injected.append(created.status_code)
            return heads

        monkeypatch.setattr(audit, "read_heads", read_heads_then_another_instance_writes)
        result = await verify(settings)
        monkeypatch.undo()
    assert injected == [201]
    assert result.valid, result.problem
    assert (await verify(settings)).valid
