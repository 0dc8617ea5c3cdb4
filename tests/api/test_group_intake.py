"""Group commit of intakes on PostgreSQL (service/referrals/group_intake.py): concurrent
intakes share one transaction, yet each answer, key, audit event and possible duplicate is what
one intake at a time would have given; a bad row fails alone; an outage stores nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from service.models import AUDIT_EVENTS, IDEMPOTENCY_KEYS, REFERRAL_MOVES, REFERRALS
from service.referrals import intake, repository
from service.referrals.group_intake import IntakeBatches
from tests.api.lifecycle.helpers import OTHER_REFERRER, REFERRER, TEAM
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
NHS = "9434765919"


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return batch_sizes_of(monkeypatch, IntakeBatches)


async def _count(app: FastAPI, table: Any, **where: Any) -> int:
    query = select(func.count()).select_from(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    async with app.state.services.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _post_all(
    client: httpx.AsyncClient, requests: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post("/v1/referrals", json=body, headers=headers) for body, headers in requests)
    )


async def _verified(client: httpx.AsyncClient, auth: Any) -> dict[str, Any]:
    response = await client.get("/v1/audit-events/verify", headers=auth(**AUDITOR))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _first_draw_is_taken(
    client: httpx.AsyncClient, auth: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Store a referral; the next reference drawn is its own again, the ones after are new."""
    response = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    taken: dict[str, Any] = response.json()
    draws = iter([taken["reference"]])
    real = intake.new_reference
    monkeypatch.setattr(intake, "new_reference", lambda: next(draws, None) or real())
    return taken


def test_group_commit_is_on_for_postgresql_only(app: FastAPI) -> None:
    batches = app.state.services.intake_batches
    if app.state.services.engine.dialect.name == "postgresql":
        assert isinstance(batches, IntakeBatches)
        assert batches.max_batch == app.state.services.settings.intake_batch_max
    else:
        assert batches is None  # SQLite has one writer: nothing to share


@pytest.mark.postgres_only
async def test_concurrent_intakes_share_a_commit_and_read_back_as_single_ones(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, batch_sizes: list[int]
) -> None:
    requests = [
        (make_referral_body(concerns__duration_weeks=n + 1), {**auth(), "Idempotency-Key": f"k{n}"})
        if n % 2
        else (make_referral_body(concerns__duration_weeks=n + 1), auth())
        for n in range(12)
    ]
    responses = await _post_all(client, requests)
    assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses]
    assert max(batch_sizes) > 1, batch_sizes
    created = [r.json() for r in responses]
    assert len({c["id"] for c in created}) == len({c["reference"] for c in created}) == 12

    for (body, headers), response in zip(requests, responses, strict=True):
        # Each answer is its own request's: the stored status reads back the same...
        status = await client.get(response.headers["location"], headers=auth())
        assert status.status_code == 200
        assert status.json()["reference"] == response.json()["reference"]
        assert status.headers["etag"] == response.headers["etag"]
        # ...and a keyed request replays exactly what it was first told.
        if "Idempotency-Key" in headers:
            again = await client.post("/v1/referrals", json=body, headers=headers)
            assert (again.status_code, again.json()) == (201, response.json())

    assert await _count(app, IDEMPOTENCY_KEYS) == 6
    assert await _count(app, REFERRAL_MOVES, action="intake") == 12
    async with app.state.services.engine.connect() as conn:
        rows = await conn.execute(
            select(AUDIT_EVENTS.c.resource_id, AUDIT_EVENTS.c.outcome, AUDIT_EVENTS.c.request_id)
            .where(AUDIT_EVENTS.c.action == "referral.created")
            .order_by(AUDIT_EVENTS.c.seq)
        )
        events = rows.all()
    first_answers = [e for e in events if e.outcome == "success"]
    # One event per referral, carrying the request id of the request that made it.
    assert sorted((e.resource_id, e.request_id) for e in first_answers) == sorted(
        (r.json()["id"], r.headers["x-request-id"]) for r in responses
    )
    assert [e.outcome for e in events].count("replayed") == 6
    verified = await _verified(client, auth)
    assert verified["valid"] is True, verified


@pytest.mark.postgres_only
async def test_one_key_sent_several_times_at_once_makes_one_referral(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, problem: Any, batch_sizes: list[int]
) -> None:
    body = make_referral_body()
    keyed = {**auth(), "Idempotency-Key": "twice"}
    responses = await _post_all(client, [(body, keyed)] * 4 + [(make_referral_body(), auth())])
    assert responses[4].status_code == 201, responses[4].text
    # As with one transaction per intake: the first makes the referral; each other request
    # replays it, or is told that the key is still in flight (409) when it came too soon.
    created = [r for r in responses[:4] if r.status_code == 201]
    assert created and all(r.json() == created[0].json() for r in created)
    for response in responses[:4]:
        if response.status_code != 201:
            problem(response, 409)
    assert await _count(app, REFERRALS) == 2
    assert await _count(app, IDEMPOTENCY_KEYS) == 1


@pytest.mark.postgres_only
async def test_one_key_with_two_bodies_at_once_never_makes_two_referrals(
    app: FastAPI, client: httpx.AsyncClient, auth: Any, problem: Any
) -> None:
    keyed = {**auth(), "Idempotency-Key": "reused"}
    changed = make_referral_body(concerns__duration_weeks=7)
    responses = await _post_all(client, [(make_referral_body(), keyed), (changed, keyed)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([201, 409], [201, 422]), [r.text for r in responses]
    for response in responses:
        if response.status_code != 201:
            problem(response, response.status_code)
    assert await _count(app, REFERRALS) == 1


@pytest.mark.postgres_only
async def test_a_reference_already_taken_sends_its_batch_through_one_at_a_time(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    batch_sizes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The batch's first intake draws the taken reference: the batch's INSERT fails as a whole.
    taken = await _first_draw_is_taken(client, auth, monkeypatch)

    responses = await _post_all(client, [(make_referral_body(), auth()) for _ in range(5)])
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    assert max(batch_sizes) == 5
    references = {r.json()["reference"] for r in responses}
    assert len(references) == 5 and taken["reference"] not in references
    assert await _count(app, REFERRALS) == 6
    assert await _count(app, AUDIT_EVENTS, action="referral.created") == 6
    assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_a_database_outage_in_a_batch_answers_every_request_and_stores_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    problem: Any,
    batch_sizes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def cancelled(*_args: object) -> None:
        raise DBAPIError("INSERT INTO referrals ...", {}, DriverError("57014"))

    monkeypatch.setattr(repository, "store_many", cancelled)
    responses = await _post_all(client, [(make_referral_body(), auth()) for _ in range(4)])
    assert max(batch_sizes) == 4
    for response in responses:
        problem(response, 503)
        assert "Jane" not in response.text and "INSERT" not in response.text
    assert await _count(app, REFERRALS) == 0
    assert await _count(app, AUDIT_EVENTS, action="referral.created") == 0


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ValueError("a message quoting Jane Doe"), id="unexpected"),
        # A value the database refuses (string data too long): the request's fault, not the
        # database's, so it must not take the rest of the batch down with it.
        pytest.param(DBAPIError("INSERT ...", {}, DriverError("22001")), id="refused-value"),
    ],
)
async def test_a_failing_batch_runs_each_intake_alone_and_logs_no_values(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    batch_sizes: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    store_many = repository.store_many

    async def broken(*args: Any) -> None:
        await store_many(*args)
        raise error

    # Fails after the batch was written in its transaction: all of it must roll back.
    monkeypatch.setattr(repository, "store_many", broken)
    with caplog.at_level(logging.ERROR):
        responses = await _post_all(client, [(make_referral_body(), auth()) for _ in range(3)])
    assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
    assert max(batch_sizes) == 3
    assert await _count(app, REFERRALS) == 3
    assert await _count(app, AUDIT_EVENTS, action="referral.created") == 3
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("group_intake")]
    assert logged and all(type(error).__name__ in m and "Jane" not in m for m in logged), logged
    assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_a_batch_shows_each_caller_only_the_duplicates_it_may_see(
    client: httpx.AsyncClient, auth: Any, batch_sizes: list[int]
) -> None:
    ours = await client.post(
        "/v1/referrals", json=make_referral_body(infant__nhs_number=NHS), headers=auth(**REFERRER)
    )
    theirs = await client.post(
        "/v1/referrals",
        json=make_referral_body(infant__nhs_number=NHS),
        headers=auth(**OTHER_REFERRER),
    )
    team = {**TEAM, "scopes": ("referrals:submit", "referrals:triage")}
    same_infant = make_referral_body(infant__nhs_number=NHS)
    responses = await _post_all(
        client,
        [
            (same_infant, auth(**REFERRER)),
            (same_infant, auth(**OTHER_REFERRER)),
            (same_infant, auth(**team)),
        ],
    )
    assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
    assert max(batch_sizes) == 3
    seen = [{d["id"] for d in r.json()["possible_duplicates"]} for r in responses]
    assert seen[0] == {ours.json()["id"]}
    assert seen[1] == {theirs.json()["id"]}
    assert seen[2] == {ours.json()["id"], theirs.json()["id"]}


@pytest.fixture
async def unbatched_app(database_url: str, signing_key: SigningKey) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url, signing_key.public_file, intake_batch_max=1)
    async with running_app(settings) as application:
        yield application


@pytest.mark.postgres_only
async def test_a_batch_size_of_one_is_one_transaction_per_intake(
    unbatched_app: FastAPI, auth: Any
) -> None:
    assert unbatched_app.state.services.intake_batches is None
    async with client_of(unbatched_app) as client:
        keyed = {**auth(), "Idempotency-Key": "alone"}
        responses = await _post_all(
            client, [(make_referral_body(), keyed)] * 2 + [(make_referral_body(), auth())] * 3
        )
        assert [r.status_code for r in responses][2:] == [201] * 3
        # The same key at once: one makes the referral, the other replays it or is told to
        # wait (409), as one transaction per intake always answered.
        assert sorted(r.status_code for r in responses[:2]) in ([201, 201], [201, 409])
        assert await _count(unbatched_app, REFERRALS) == 4
        assert (await _verified(client, auth))["valid"] is True


@pytest.mark.postgres_only
async def test_when_the_database_goes_while_intakes_run_alone_the_rest_are_not_tried(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Any,
    problem: Any,
    batch_sizes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _first_draw_is_taken(client, auth, monkeypatch)
    tried: list[object] = []

    async def shutting_down(_session: object, request: object) -> None:
        tried.append(request)
        raise DBAPIError("BEGIN", {}, DriverError("57P01"))  # admin shutdown: unavailable

    # The batch fails on the taken reference; its intakes then run alone, and the first of
    # them finds the database gone: the others get the same answer without waiting for it.
    monkeypatch.setattr(intake, "submit", shutting_down)
    responses = await _post_all(client, [(make_referral_body(), auth()) for _ in range(4)])
    assert max(batch_sizes) == 4
    for response in responses:
        problem(response, 503)
    assert len(tried) == 1
    assert await _count(app, REFERRALS) == 1
