"""Group commit of the reads' audit events on PostgreSQL (service/audit/group_append.py):
concurrent reads share one transaction for their events, yet each read is answered only once
its own event is durable, each event is the one its read would have written alone, and the
chain verifies; an outage answers 503 and records nothing; a bad batch's events go alone."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from service.audit import chain
from service.audit.group_append import AuditBatches
from service.models import AUDIT_EVENTS, REFERRALS
from tests.api.lifecycle import helpers
from tests.conftest import (
    DriverError,
    SigningKey,
    batch_sizes_of,
    client_of,
    make_settings,
    running_app,
)
from tests.factories import make_referral_body

AUDITOR = {"org": "PIT01", "sub": "auditor-1", "scopes": ("audit:read_all",)}
REFERRER = {**helpers.REFERRER, "sub": "health-visitor-1"}
OTHER_REFERRER = {**helpers.OTHER_REFERRER, "sub": "health-visitor-2"}
READ_ACTIONS = {
    "/status": "referral.status_read",
    "/history": "referral.history_read",
    "": "referral.read",
}


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return batch_sizes_of(monkeypatch, AuditBatches)


@pytest.fixture
def hold_until(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`hold_until(n)`: no batch starts before n reads have queued their events, so that they
    share one whatever the timing; from then on batches start as they always do."""

    def hold(count: int) -> None:
        start = AuditBatches._start_flush
        opened = False

        def held(self: AuditBatches) -> None:
            nonlocal opened
            opened = opened or len(self._queue) >= count
            if opened:
                start(self)

        monkeypatch.setattr(AuditBatches, "_start_flush", held)

    return hold


async def _events(app: FastAPI) -> list[Any]:
    async with app.state.services.engine.connect() as conn:
        rows = await conn.execute(select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq))
        return list(rows.all())


async def _heads(app: FastAPI) -> list[chain.ChainHead]:
    async with app.state.services.engine.connect() as conn:
        return await chain.read_heads(conn)


async def _verified(client: httpx.AsyncClient, auth: Any) -> dict[str, Any]:
    response = await client.get("/v1/audit-events/verify", headers=auth(**AUDITOR))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _created(client: httpx.AsyncClient, auth: Any, who: dict[str, Any]) -> dict[str, Any]:
    created = await client.post("/v1/referrals", json=make_referral_body(), headers=auth(**who))
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def _referral(client: httpx.AsyncClient, auth: Any, who: dict[str, Any]) -> str:
    return str((await _created(client, auth, who))["id"])


def test_read_audit_batches_are_on_for_postgresql_only(app: FastAPI) -> None:
    batches = app.state.services.audit_batches
    if app.state.services.engine.dialect.name == "postgresql":
        assert isinstance(batches, AuditBatches)
        assert batches.max_batch == app.state.services.settings.read_audit_batch_max
    else:
        assert batches is None  # SQLite has one writer: nothing to share


@pytest.mark.postgres_only
async def test_concurrent_reads_share_a_commit_and_each_has_its_own_event(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    batch_sizes: list[int],
    hold_until: Callable[[int], None],
) -> None:
    ours = await _referral(client, auth, REFERRER)
    theirs = await _referral(client, auth, OTHER_REFERRER)
    before = len(await _events(app))
    reads = [
        (f"/v1/referrals/{ours}{suffix}", REFERRER)
        for suffix in ("/status", "/history", "", "/status")
    ] + [
        (f"/v1/referrals/{theirs}/status", OTHER_REFERRER),
        ("/v1/referrals?limit=5", REFERRER),
        ("/v1/referrals?limit=5", OTHER_REFERRER),
    ]
    hold_until(len(reads))
    responses = await asyncio.gather(
        *(client.get(path, headers=auth(**who)) for path, who in reads)
    )
    assert [r.status_code for r in responses] == [200] * len(reads), [r.text for r in responses]
    assert batch_sizes == [len(reads)]

    # Each organisation's answers show its own referral only, batch or not.
    assert responses[0].json()["id"] == ours and responses[4].json()["id"] == theirs
    assert [item["id"] for item in responses[5].json()["items"]] == [ours]
    assert [item["id"] for item in responses[6].json()["items"]] == [theirs]

    events = (await _events(app))[before:]
    assert len(events) == len(reads)
    by_request = {e.request_id: e for e in events}
    for (path, who), response in zip(reads, responses, strict=True):
        event = by_request[response.headers["x-request-id"]]
        assert (event.actor_org, event.actor_sub) == (who["org"], who["sub"])
        assert event.outcome == "success"
        if path.startswith("/v1/referrals?"):
            assert (event.action, event.resource_id) == ("referral.listed", None)
            assert event.details == {"returned": 1}
        else:
            referral_id, _, rest = path.removeprefix("/v1/referrals/").partition("/")
            assert event.action == READ_ACTIONS["/" + rest if rest else ""]
            assert event.resource_id == referral_id
    verified = await _verified(client, auth)
    assert verified["valid"] is True, verified


@pytest.mark.postgres_only
async def test_another_organisations_read_in_the_same_batch_is_404_and_recorded_as_denied(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    problem: Any,
    batch_sizes: list[int],
    hold_until: Callable[[int], None],
) -> None:
    ours = await _referral(client, auth, REFERRER)
    before = len(await _events(app))
    own = [client.get(f"/v1/referrals/{ours}/status", headers=auth(**REFERRER)) for _ in range(5)]
    refused = [
        client.get(f"/v1/referrals/{ours}/status", headers=auth(**OTHER_REFERRER)),
        client.get(f"/v1/referrals/{ours}", headers=auth(**OTHER_REFERRER)),
        client.get(f"/v1/referrals/{uuid.uuid4()}/status", headers=auth(**REFERRER)),
    ]
    hold_until(5)
    responses = await asyncio.gather(*own, *refused)
    assert [r.status_code for r in responses[:5]] == [200] * 5
    assert batch_sizes == [5]
    missing = [problem(r, 404) for r in responses[5:]]
    # Another organisation's referral answers exactly as a missing one: no oracle.
    echoed = ("instance", "request_id")
    shapes = [{k: v for k, v in m.items() if k not in echoed} for m in missing]
    assert shapes[0] == shapes[1] == shapes[2]

    events = (await _events(app))[before:]
    outcomes = sorted((e.actor_org, e.action, e.outcome) for e in events)
    assert outcomes == sorted(
        [(REFERRER["org"], "referral.status_read", "success")] * 5
        + [
            (OTHER_REFERRER["org"], "access.denied", "denied"),
            (OTHER_REFERRER["org"], "access.denied", "denied"),
            (REFERRER["org"], "referral.status_read", "not_found"),
        ]
    )
    assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_concurrent_dry_runs_share_a_commit_and_store_only_their_events(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    batch_sizes: list[int],
    hold_until: Callable[[int], None],
) -> None:
    before = len(await _events(app))
    hold_until(4)
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/eligibility/check",
                json=make_referral_body(concerns__duration_weeks=n + 1),
                headers=auth(**REFERRER),
            )
            for n in range(4)
        )
    )
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert batch_sizes == [4]
    events = (await _events(app))[before:]
    assert sorted((e.request_id, e.action) for e in events) == sorted(
        (r.headers["x-request-id"], "eligibility.checked") for r in responses
    )
    for event, response in zip(
        sorted(events, key=lambda e: e.request_id),
        sorted(responses, key=lambda r: r.headers["x-request-id"]),
        strict=True,
    ):
        assert event.details["outcome"] == response.json()["outcome"]
    async with app.state.services.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(REFERRALS))).scalar() == 0
    assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_a_database_outage_in_a_batch_fails_every_read_and_records_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    problem: Any,
    batch_sizes: list[int],
    hold_until: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = await _created(client, auth, REFERRER)
    ours = created["id"]
    before = await _events(app)
    append_many = chain.append_many

    async def cancelled_after_writing(*args: Any) -> list[str]:
        await append_many(*args)
        raise DBAPIError("INSERT INTO audit_events ...", {}, DriverError("57014"))

    monkeypatch.setattr(chain, "append_many", cancelled_after_writing)
    hold_until(4)
    responses = await asyncio.gather(
        *(client.get(f"/v1/referrals/{ours}/status", headers=auth(**REFERRER)) for _ in range(4))
    )
    assert batch_sizes == [4]
    for response in responses:
        # No reading answered without its record: nothing of the referral is in the answer.
        problem(response, 503)
        assert created["reference"] not in response.text and "Jane" not in response.text
    assert await _events(app) == before


@pytest.mark.postgres_only
async def test_a_failing_batch_appends_each_event_alone_and_logs_no_values(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    batch_sizes: list[int],
    hold_until: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours = await _referral(client, auth, REFERRER)
    before = len(await _events(app))
    append_many = chain.append_many

    async def broken(*args: Any) -> list[str]:
        await append_many(*args)  # written in the batch's transaction, which must roll back
        raise ValueError("a message quoting Jane Doe")

    monkeypatch.setattr(chain, "append_many", broken)
    hold_until(6)
    with caplog.at_level(logging.ERROR):
        responses = await asyncio.gather(
            *(
                client.get(f"/v1/referrals/{ours}/status", headers=auth(**REFERRER))
                for _ in range(6)
            )
        )
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert batch_sizes == [6]
    events = (await _events(app))[before:]
    assert sorted(e.request_id for e in events) == sorted(
        r.headers["x-request-id"] for r in responses
    )
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("group_append")]
    assert logged and all("ValueError" in m and "Jane" not in m for m in logged), logged
    assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_a_batch_size_of_one_appends_each_reads_event_with_the_read(
    database_url: str, signing_key: SigningKey, auth: Any
) -> None:
    settings = make_settings(database_url, signing_key.public_file, read_audit_batch_max=1)
    async with running_app(settings) as app, client_of(app) as client:
        assert app.state.services.audit_batches is None
        ours = await _referral(client, auth, REFERRER)
        before = len(await _events(app))
        responses = await asyncio.gather(
            *(
                client.get(f"/v1/referrals/{ours}{suffix}", headers=auth(**REFERRER))
                for suffix in ("/status", "", "/history")
            )
        )
        assert [r.status_code for r in responses] == [200] * 3
        events = (await _events(app))[before:]
        assert sorted(e.action for e in events) == sorted(READ_ACTIONS.values())
        assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_more_waiting_reads_than_pooled_connections_still_commit(
    database_url: str, signing_key: SigningKey, auth: Any
) -> None:
    # A read gives its connection back before it waits for its batch. Were it to hold it, the
    # reads would hold both connections while their batch waited for one to commit with, until
    # the pool gave up (a 503 for every read).
    settings = make_settings(database_url, signing_key.public_file, db_pool_size=2)
    async with running_app(settings) as app, client_of(app) as client:
        ours = await _referral(client, auth, REFERRER)
        responses = await asyncio.gather(
            *(
                client.get(f"/v1/referrals/{ours}{suffix}", headers=auth(**REFERRER))
                for suffix in ("/status", "/history", "") * 4
            ),
            *(client.get("/v1/referrals", headers=auth(**REFERRER)) for _ in range(4)),
        )
        assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
        assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_a_connection_a_read_used_outside_a_transaction_comes_back_transactional(
    database_url: str, signing_key: SigningKey, auth: Any
) -> None:
    # One pooled connection: the read's (AUTOCOMMIT while it is lent) is the very one the next
    # unit of work gets, which must still roll back everything when it fails.
    settings = make_settings(database_url, signing_key.public_file, db_pool_size=1)
    async with running_app(settings) as app, client_of(app) as client:
        ours = await _referral(client, auth, REFERRER)
        status = await client.get(f"/v1/referrals/{ours}/status", headers=auth(**REFERRER))
        assert status.status_code == 200
        heads = await _heads(app)
        with pytest.raises(RuntimeError):
            async with app.state.services.units.begin() as session:
                await session.execute(text("UPDATE audit_chain_heads SET hash = 'edited'"))
                raise RuntimeError("the work fails after writing")
        assert await _heads(app) == heads
        assert (await _verified(client, auth))["valid"] is True
