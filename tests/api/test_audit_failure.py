"""If the audit event cannot be written, the request fails (503) and nothing it did is kept."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.audit import chain as audit
from service.models import AUDIT_CHAIN_HEADS, AUDIT_EVENTS, IDEMPOTENCY_KEYS, REFERRALS
from service.referrals import repository
from tests.conftest import ALL_SCOPES
from tests.factories import make_referral_body

Auth = Callable[..., dict[str, str]]
ProblemCheck = Callable[..., dict[str, Any]]


def database_error() -> OperationalError:
    return OperationalError("INSERT INTO audit_events ...", {}, Exception("disk I/O error"))


async def fails_before_writing(*_args: Any, **_kwargs: Any) -> str:
    raise database_error()


ORIGINAL_APPEND = audit.append_entry
ORIGINAL_APPEND_MANY = audit.append_many


async def fails_after_writing(*args: Any, **kwargs: Any) -> str:
    """The event and the head move are in the transaction; then the database gives out."""
    await ORIGINAL_APPEND(*args, **kwargs)
    raise database_error()


async def many_fail_after_writing(*args: Any, **kwargs: Any) -> list[str]:
    """The same for the reads' batch of events (group commit on PostgreSQL)."""
    await ORIGINAL_APPEND_MANY(*args, **kwargs)
    raise database_error()


def break_audit(monkeypatch: pytest.MonkeyPatch, broken_append: Any) -> None:
    """Every way an event is appended: alone (`append` goes through `append_entry`), and the
    reads' batches on PostgreSQL."""
    monkeypatch.setattr(audit, "append_entry", broken_append)
    after = broken_append is fails_after_writing
    monkeypatch.setattr(audit, "append_many", many_fail_after_writing if after else broken_append)


ORIGINAL_STORE_MANY = repository.store_many


def chaining_fails(*_args: Any, **_kwargs: Any) -> None:
    raise database_error()


async def store_many_then_fail(*args: Any, **kwargs: Any) -> None:
    """The same for a batch of intakes (group commit on PostgreSQL): the referrals, events and
    head move are in the transaction; then the database gives out."""
    await ORIGINAL_STORE_MANY(*args, **kwargs)
    raise database_error()


def break_batched_audit(monkeypatch: pytest.MonkeyPatch, broken_append: Any) -> None:
    """On PostgreSQL intake appends a batch's events in the statement that stores the batch."""
    if broken_append is fails_before_writing:
        monkeypatch.setattr(audit, "chain_events", chaining_fails)
    else:
        monkeypatch.setattr(repository, "store_many", store_many_then_fail)


FAILURES = pytest.mark.parametrize(
    "broken_append", [fails_before_writing, fails_after_writing], ids=["before", "after"]
)


async def snapshot(app: FastAPI) -> dict[str, Any]:
    async with app.state.services.engine.connect() as conn:

        async def count(table: Any) -> int:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())

        heads = (await conn.execute(select(AUDIT_CHAIN_HEADS))).mappings().all()
        return {
            "referrals": await count(REFERRALS),
            "idempotency_keys": await count(IDEMPOTENCY_KEYS),
            "audit_events": await count(AUDIT_EVENTS),
            "heads": sorted(tuple(h.values()) for h in heads),
        }


def assert_unavailable(response: httpx.Response, problem: ProblemCheck) -> None:
    problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert "disk" not in response.text and "INSERT" not in response.text


@FAILURES
async def test_a_referral_is_not_stored_when_its_audit_event_cannot_be_written(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    problem: ProblemCheck,
    broken_append: Callable[..., Any],
) -> None:
    before = await snapshot(app)
    headers = {**auth(), "Idempotency-Key": "audit-down-1"}
    break_audit(monkeypatch, broken_append)
    break_batched_audit(monkeypatch, broken_append)

    response = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
    assert_unavailable(response, problem)
    assert "location" not in response.headers
    assert await snapshot(app) == before

    # Once the audit trail works again the same key creates the referral afresh.
    monkeypatch.undo()
    retried = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    after = await snapshot(app)
    assert (after["referrals"], after["idempotency_keys"], after["audit_events"]) == (1, 1, 1)


@FAILURES
@pytest.mark.parametrize(
    "path",
    [
        "/v1/referrals/{referral_id}",
        "/v1/referrals/{referral_id}/status",
        "/v1/referrals",
        "/v1/audit-events",
        "/v1/audit-events/verify",
    ],
)
async def test_a_read_fails_when_its_audit_event_cannot_be_written(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    problem: ProblemCheck,
    broken_append: Callable[..., Any],
    path: str,
) -> None:
    created = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    assert created.status_code == 201
    before = await snapshot(app)
    break_audit(monkeypatch, broken_append)

    response = await client.get(
        path.format(referral_id=created.json()["id"]), headers=auth(scopes=ALL_SCOPES)
    )
    assert_unavailable(response, problem)
    assert await snapshot(app) == before


@FAILURES
async def test_an_eligibility_check_fails_when_its_audit_event_cannot_be_written(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    problem: ProblemCheck,
    broken_append: Callable[..., Any],
) -> None:
    before = await snapshot(app)
    break_audit(monkeypatch, broken_append)
    response = await client.post("/v1/eligibility/check", json=make_referral_body(), headers=auth())
    assert_unavailable(response, problem)
    assert await snapshot(app) == before


@FAILURES
@pytest.mark.parametrize("refusal", ["missing_scope", "other_organisation", "not_found"])
async def test_a_refusal_fails_when_its_audit_event_cannot_be_written(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    problem: ProblemCheck,
    broken_append: Callable[..., Any],
    refusal: str,
) -> None:
    created = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    referral_id = created.json()["id"]
    before = await snapshot(app)
    break_audit(monkeypatch, broken_append)

    if refusal == "missing_scope":
        response = await client.get("/v1/audit-events", headers=auth())
    elif refusal == "other_organisation":
        response = await client.get(f"/v1/referrals/{referral_id}", headers=auth(org="RX2"))
    else:
        response = await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=auth())
    # An unrecorded refusal is not an answer we may give: the request fails as a whole.
    assert_unavailable(response, problem)
    assert await snapshot(app) == before
