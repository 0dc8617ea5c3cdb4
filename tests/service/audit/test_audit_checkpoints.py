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
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from service.audit import checkpoints, verification
from service.audit.chain import AUDIT_CHAINS, ChainHead
from service.core.database import create_engine, make_sessionmaker
from service.core.settings import Settings
from service.core.unit_of_work import UnitOfWork
from service.models import AUDIT_CHAIN_HEADS, AUDIT_CHECKPOINTS, AUDIT_EVENTS
from tests.conftest import ALL_SCOPES
from tests.service.audit.test_audit_chain import (
    busiest_chain,
    document_of,
    forged_row,
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
    engine = create_async_engine(database_url)
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
    engine = create_async_engine(database_url)
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


@pytest.mark.parametrize("chain", [AUDIT_CHAINS, -1])
async def test_an_incremental_run_reads_every_event_of_a_chain_without_a_head(
    client: httpx.AsyncClient, auth: Auth, database_url: str, chain: int
) -> None:
    await make_events(client, auth(), 6)
    assert (await verify_over_http(client, auth))["valid"] is True
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            # From the sequence on PostgreSQL, so that the service's next append gets another.
            if conn.dialect.name == "postgresql":
                taken = text("SELECT nextval(pg_get_serial_sequence('audit_events', 'seq'))")
                seq = int((await conn.execute(taken)).scalar_one())
            else:
                last = await conn.execute(select(func.max(AUDIT_EVENTS.c.seq)))
                seq = int(last.scalar_one()) + 1
    finally:
        await engine.dispose()
    forged = forged_row(seq=seq, chain=chain, chain_seq=1, prev_hash="0" * 64)
    await tamper(database_url, insert(AUDIT_EVENTS).values(**forged))

    body = await verify_over_http(client, auth)
    assert (body["valid"], body["first_invalid_seq"]) == (False, forged["seq"])


async def test_an_incremental_run_finds_a_removed_head_and_a_rewound_one(
    client: httpx.AsyncClient, auth: Auth, database_url: str, settings: Settings
) -> None:
    await make_events(client, auth(), 8)
    assert (await verify_over_http(client, auth))["valid"] is True
    chain = busiest_chain(await raw_events(database_url))
    checkpoint = (await stored_checkpoints(database_url))[chain[0]["chain"]]
    cut = [e for e in chain if e["chain_seq"] >= checkpoint["chain_seq"]]
    last, new_last = cut[0], chain[checkpoint["chain_seq"] - 2]
    # A tail cut off from before the checkpoint, its head rewound: consistent, but for the
    # checkpoint, which plays the part of an anchor inside the database.
    await tamper(
        database_url,
        delete(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq.in_([e["seq"] for e in cut])),
        update(AUDIT_CHAIN_HEADS)
        .where(AUDIT_CHAIN_HEADS.c.chain == last["chain"])
        .values(chain_seq=new_last["chain_seq"], seq=new_last["seq"], hash=new_last["hash"]),
    )
    body = await verify_over_http(client, auth)
    assert body["valid"] is False
    assert "behind its verified checkpoint" in body["problem"]
    assert body["first_invalid_seq"] == checkpoint["seq"]

    await tamper(
        database_url,
        delete(AUDIT_CHAIN_HEADS).where(AUDIT_CHAIN_HEADS.c.chain == last["chain"]),
    )
    # (Not over HTTP: with a head gone, appending the verification's own event can fail.)
    engine = create_engine(settings)
    try:
        async with UnitOfWork(make_sessionmaker(engine)).begin() as session:
            result = await verification.verify(session, incremental=True)
    finally:
        await engine.dispose()
    assert result.valid is False
    assert "no head" in str(result.problem)


async def test_a_head_whose_sequence_number_is_not_its_last_events_is_found(
    client: httpx.AsyncClient, auth: Auth, database_url: str, settings: Settings
) -> None:
    # The head becomes the next checkpoint: a head naming another event's sequence number
    # must not be recorded as verified (the full run would then blame the checkpoint).
    await make_events(client, auth(), 4)
    assert (await verify_over_http(client, auth))["valid"] is True
    before = await stored_checkpoints(database_url)
    await make_events(client, auth(), 6)
    last = busiest_chain(await raw_events(database_url))[-1]
    await tamper(
        database_url,
        update(AUDIT_CHAIN_HEADS)
        .where(AUDIT_CHAIN_HEADS.c.chain == last["chain"])
        .values(seq=last["seq"] + 1000),
    )

    engine = create_engine(settings)
    try:
        async with UnitOfWork(make_sessionmaker(engine)).begin() as session:
            full = await verification.verify(session)
    finally:
        await engine.dispose()
    assert (full.valid, full.first_invalid_seq) == (False, last["seq"] + 1000)
    assert "head" in str(full.problem) and "checkpoint" not in str(full.problem)

    body = await verify_over_http(client, auth)
    assert (body["valid"], body["first_invalid_seq"]) == (False, last["seq"] + 1000)
    assert (await stored_checkpoints(database_url)).get(last["chain"]) == before.get(last["chain"])
