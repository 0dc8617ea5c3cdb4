"""`referral-service audit verify [--anchor FILE]` and `referral-service audit head`."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from service.cli import main
from service.models import AUDIT_CHAIN_HEADS, AUDIT_CHECKPOINTS, AUDIT_EVENTS
from tests.conftest import ALL_SCOPES
from tests.factories import make_referral_body
from tests.service.audit.test_audit_chain import tamper


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("REFERRAL_DATABASE_URL", database_url)
    monkeypatch.setenv("REFERRAL_ENV", "development")
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line as a user would; asyncio.run() needs a thread without a loop."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def events_by_seq(database_url: str) -> list[dict[str, Any]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.chain, AUDIT_EVENTS.c.chain_seq)
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]
    finally:
        await engine.dispose()


async def make_events(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> None:
    for _ in range(count):
        created = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
        assert created.status_code == 201, created.text


def longest_chain(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chains: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        chains.setdefault(event["chain"], []).append(event)
    return max(chains.values(), key=len)


async def test_verify_exits_0_on_a_clean_trail_and_1_naming_the_first_bad_event(
    cli_env: Path,
    database_url: str,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = await cli(capsys, "audit", "verify")
    assert code == 0, err
    assert json.loads(out)["events_checked"] == 0

    await make_events(client, auth(), 17)
    code, out, err = await cli(capsys, "audit", "verify")
    assert code == 0, err
    report = json.loads(out)
    assert report["valid"] is True
    assert report["events_checked"] == 17
    assert report["first_invalid_seq"] is None

    target = longest_chain(await events_by_seq(database_url))[1]
    await tamper(
        database_url,
        update(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq == target["seq"]).values(outcome="denied"),
    )
    code, out, err = await cli(capsys, "audit", "verify", "--full")
    assert code == 1
    assert f"seq {target['seq']}" in err
    report = json.loads(out)
    assert report["valid"] is False
    assert report["mode"] == "full"
    assert report["first_invalid_seq"] == target["seq"]


async def test_head_matches_the_head_hash_the_api_reports(
    cli_env: Path,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await make_events(client, auth(), 5)
    code, out, err = await cli(capsys, "audit", "head")
    assert code == 0, err
    head = json.loads(out)

    # The API's verify reports the heads it checked, before recording its own event.
    verified = await client.get("/v1/audit-events/verify", headers=auth(scopes=ALL_SCOPES))
    assert verified.status_code == 200
    body = verified.json()
    assert body["valid"] is True
    assert head["head_hash"] == body["head_hash"]
    assert head["heads"] == body["heads"]
    assert len(head["head_hash"]) == 64


async def test_verify_with_an_anchor_finds_a_cut_off_tail(
    cli_env: Path,
    database_url: str,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await make_events(client, auth(), 17)
    code, out, err = await cli(capsys, "audit", "head")
    assert code == 0, err
    anchor = cli_env / "anchor.json"
    anchor.write_text(out)

    code, out, err = await cli(capsys, "audit", "verify", "--anchor", str(anchor))
    assert code == 0, err

    # More events are fine: the anchor only pins what existed when it was taken.
    await make_events(client, auth(), 3)
    code, out, err = await cli(capsys, "audit", "verify", "--anchor", str(anchor))
    assert code == 0, err

    # Cut the chain back to before its anchored position, and rewind its head to match.
    pinned = max(json.loads(anchor.read_text())["heads"], key=lambda h: h["chain_seq"])
    chain = [e for e in await events_by_seq(database_url) if e["chain"] == pinned["chain"]]
    removed = [e for e in chain if e["chain_seq"] >= pinned["chain_seq"]]
    kept = next(e for e in chain if e["chain_seq"] == pinned["chain_seq"] - 1)
    await tamper(
        database_url,
        delete(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq.in_([e["seq"] for e in removed])),
        update(AUDIT_CHAIN_HEADS)
        .where(AUDIT_CHAIN_HEADS.c.chain == kept["chain"])
        .values(chain_seq=kept["chain_seq"], seq=kept["seq"], hash=kept["hash"]),
    )
    anchored_seq = pinned["seq"]

    code, out, err = await cli(capsys, "audit", "verify", "--full")
    assert code == 1, "the checkpoints the earlier runs recorded act as anchors inside the database"
    assert "checkpoint" in err
    # An attacker who also rewinds the checkpoints leaves nothing inside the database to see...
    await tamper(database_url, delete(AUDIT_CHECKPOINTS))
    code, out, err = await cli(capsys, "audit", "verify", "--full")
    assert code == 0, "without an anchor, a consistent rewind cannot be seen"
    # ...but the anchor kept outside it shows the cut.
    code, out, err = await cli(capsys, "audit", "verify", "--anchor", str(anchor))
    assert code == 1
    assert f"seq {anchored_seq}" in err
    assert json.loads(out)["first_invalid_seq"] == anchored_seq


async def checkpoint_rows(database_url: str) -> list[Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(select(AUDIT_CHECKPOINTS)))
    finally:
        await engine.dispose()


async def test_read_only_verify_records_no_checkpoint(
    cli_env: Path,
    database_url: str,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await make_events(client, auth(scopes=ALL_SCOPES), 3)
    code, out, err = await cli(capsys, "audit", "verify", "--full", "--read-only")
    assert code == 0, err
    assert json.loads(out)["valid"] is True
    assert await checkpoint_rows(database_url) == []
    code, _, err = await cli(capsys, "audit", "verify")
    assert code == 0, err
    assert await checkpoint_rows(database_url) != []


@pytest.mark.postgres_only
async def test_an_auditors_select_only_role_can_verify_read_only(
    cli_env: Path,
    database_url: str,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await make_events(client, auth(scopes=ALL_SCOPES), 3)
    role = f"auditor_{secrets.token_hex(4)}"
    url = make_url(database_url)
    admin = create_async_engine(database_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
            await conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        monkeypatch.setenv(
            "REFERRAL_DATABASE_URL", url.set(username=role).render_as_string(hide_password=False)
        )
        code, out, err = await cli(capsys, "audit", "verify", "--full", "--read-only")
        assert code == 0, err
        assert json.loads(out)["valid"] is True
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {role}"))
            await conn.execute(text(f"DROP ROLE {role}"))
        await admin.dispose()
