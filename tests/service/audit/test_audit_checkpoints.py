"""Verified checkpoints: an incremental run trusts them, a full run (`audit verify --full`)
trusts none of them. Tampering after a checkpoint is found by both; tampering before one, and a
forged checkpoint, only by the full run, and the incremental run says what it did not check."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from service.audit import checkpoints
from service.audit.chain import ChainHead
from service.core.database import create_engine
from service.core.settings import Settings
from service.models import AUDIT_CHECKPOINTS, AUDIT_EVENTS
from tests.conftest import ALL_SCOPES
from tests.service.audit.test_audit_chain import (
    busiest_chain,
    document_of,
    raw_events,
    recompute_hash,
    tamper,
)
from tests.service.audit.test_audit_cli import cli, make_events

Auth = Callable[..., dict[str, str]]


@pytest.fixture(autouse=True)
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("REFERRAL_DATABASE_URL", database_url)
    monkeypatch.setenv("REFERRAL_ENV", "development")
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def stored_checkpoints(database_url: str) -> dict[int, dict[str, Any]]:
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(AUDIT_CHECKPOINTS))).mappings().all()
            return {int(r["chain"]): dict(r) for r in rows}
    finally:
        await engine.dispose()


async def verify_over_http(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    response = await client.get("/v1/audit-events/verify", headers=auth(scopes=ALL_SCOPES))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_tampering_before_a_checkpoint_is_found_by_the_full_run_and_not_passed_off(
    client: httpx.AsyncClient,
    auth: Auth,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await make_events(client, auth(), 12)
    assert (await verify_over_http(client, auth))["valid"] is True
    target = busiest_chain(await raw_events(database_url))[1]
    await tamper(
        database_url,
        update(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq == target["seq"]).values(outcome="denied"),
    )

    # Incremental runs trust what was verified before: they do not see it, and say so.
    body = await verify_over_http(client, auth)
    assert (body["valid"], body["mode"]) == (True, "incremental")
    assert body["events_before_checkpoints"] >= target["chain_seq"]
    code, out, err = await cli(capsys, "audit", "verify")
    assert code == 0, err
    assert json.loads(out)["mode"] == "incremental"
    assert "were not re-checked" in err and "--full" in err

    # The auditor's full run trusts no checkpoint.
    code, out, err = await cli(capsys, "audit", "verify", "--full")
    assert code == 1
    report = json.loads(out)
    assert (report["valid"], report["mode"]) == (False, "full")
    assert report["first_invalid_seq"] == target["seq"]
    assert f"INVALID at seq {target['seq']}" in err


async def test_a_forged_checkpoint_hides_nothing_from_the_full_run(
    client: httpx.AsyncClient,
    auth: Auth,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An attacker edits an event and re-hashes it, then forges the chain's checkpoint at the
    head so that no incremental run ever re-reads the edit's broken link."""
    await make_events(client, auth(), 12)
    chain = busiest_chain(await raw_events(database_url))
    target, last = chain[1], chain[-1]
    edited = {**target, "outcome": "denied"}
    await tamper(
        database_url,
        update(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.seq == target["seq"])
        .values(outcome="denied", hash=recompute_hash(document_of(edited))),
    )
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.begin() as conn:
            head = ChainHead(last["chain"], last["chain_seq"], last["seq"], last["hash"])
            await checkpoints.advance(conn, [head], datetime.now(UTC))
    finally:
        await engine.dispose()

    assert (await verify_over_http(client, auth))["valid"] is True
    code, out, err = await cli(capsys, "audit", "verify", "--full")
    assert code == 1
    assert json.loads(out)["first_invalid_seq"] == chain[2]["seq"]


async def test_a_checkpoint_that_names_no_stored_event_is_found_by_the_full_run(
    client: httpx.AsyncClient,
    auth: Auth,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await make_events(client, auth(), 6)
    code, _, err = await cli(capsys, "audit", "verify", "--full")
    assert code == 0, err
    chain = busiest_chain(await raw_events(database_url))
    assert (await stored_checkpoints(database_url))[chain[0]["chain"]]["hash"] == chain[-1]["hash"]
    await tamper(
        database_url,
        update(AUDIT_CHECKPOINTS)
        .where(AUDIT_CHECKPOINTS.c.chain == chain[0]["chain"])
        .values(hash="f" * 64),
    )

    code, out, err = await cli(capsys, "audit", "verify", "--full")
    assert code == 1
    report = json.loads(out)
    assert report["first_invalid_seq"] == chain[-1]["seq"]
    assert "checkpoint" in report["problem"]
    # And it is not "repaired" by the run that found it: every later full run finds it too.
    code, _, _ = await cli(capsys, "audit", "verify", "--full")
    assert code == 1


async def test_no_checkpoint_is_recorded_past_an_event_that_failed(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    await make_events(client, auth(), 4)
    assert (await verify_over_http(client, auth))["valid"] is True
    before = await stored_checkpoints(database_url)
    await make_events(client, auth(), 8)
    chain = busiest_chain(await raw_events(database_url))
    target = chain[-2]
    await tamper(
        database_url,
        update(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq == target["seq"]).values(outcome="denied"),
    )

    body = await verify_over_http(client, auth)
    assert (body["valid"], body["first_invalid_seq"]) == (False, target["seq"])
    after = await stored_checkpoints(database_url)
    assert after.get(target["chain"]) == before.get(target["chain"])


async def test_checkpoints_only_move_forward(settings: Settings, database_url: str) -> None:
    """Two verifications at once: the one that saw less, committing last, undoes nothing."""
    further = ChainHead(0, 5, 9, "a" * 64)
    behind = ChainHead(0, 3, 6, "b" * 64)
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await checkpoints.advance(conn, [further], datetime.now(UTC))
        async with engine.begin() as conn:
            await checkpoints.advance(conn, [behind], datetime.now(UTC))
        async with engine.connect() as conn:
            assert await checkpoints.read(conn) == [further]
    finally:
        await engine.dispose()
