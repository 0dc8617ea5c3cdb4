"""The audit chains verify, and verification finds every kind of tampering and names the first
bad event. The tampering is done as an attacker with database access would: plain SQL on SQLite;
on PostgreSQL as a superuser who switches the append-only trigger off for the session."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Executable

from api.app import create_app
from service.audit import chain as audit
from service.audit import verification
from service.core.context import Caller, RequestContext
from service.core.database import create_engine, make_sessionmaker
from service.core.settings import Settings
from service.core.unit_of_work import UnitOfWork
from service.models import AUDIT_CHAIN_HEADS, AUDIT_EVENTS
from tests.conftest import ALL_SCOPES
from tests.factories import make_referral_body

EVENTS = AUDIT_EVENTS
HEADS = AUDIT_CHAIN_HEADS
GENESIS = "0" * 64

Event = dict[str, Any]


# --- helpers -----------------------------------------------------------------------------------


def recompute_hash(document: Event) -> str:
    """Written here on purpose (not service.audit.event_hash): canonical JSON, then SHA-256."""
    body = {k: v for k, v in document.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def document_of(row: Event) -> Event:
    """The hashed form of a raw audit_events row, as the contract describes it."""
    moment = row["occurred_at"]
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return {
        "seq": row["seq"],
        "chain": row["chain"],
        "chain_seq": row["chain_seq"],
        "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": {"sub": row["actor_sub"], "org": row["actor_org"]},
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "outcome": row["outcome"],
        "request_id": row["request_id"],
        "details": row["details"],
        "prev_hash": row["prev_hash"],
    }


async def raw_events(database_url: str) -> list[Event]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(EVENTS).order_by(EVENTS.c.seq))).mappings().all()
            return [dict(r) for r in rows]
    finally:
        await engine.dispose()


async def raw_heads(database_url: str) -> list[Event]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(HEADS).order_by(HEADS.c.chain))).mappings().all()
            return [dict(r) for r in rows]
    finally:
        await engine.dispose()


async def tamper(database_url: str, *statements: Executable) -> None:
    """Run statements in one transaction, as an attacker would. On PostgreSQL the superuser
    turns ordinary triggers off for this transaction, so the append-only trigger is bypassed."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in statements:
                await conn.execute(statement)
    finally:
        await engine.dispose()


async def verify(settings: Settings, anchor: list[audit.ChainHead] | None = None) -> Any:
    engine = create_engine(settings)
    try:
        async with UnitOfWork(make_sessionmaker(engine)).begin() as session:
            return await verification.verify(session, anchor)
    finally:
        await engine.dispose()


async def read_heads(settings: Settings) -> list[audit.ChainHead]:
    engine = create_engine(settings)
    try:
        async with UnitOfWork(make_sessionmaker(engine)).begin() as session:
            return await audit.read_heads(session)
    finally:
        await engine.dispose()


async def make_events(client: httpx.AsyncClient, headers: dict[str, str], referrals: int) -> None:
    """Two events per referral: its creation and a read."""
    for _ in range(referrals):
        created = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
        assert created.status_code == 201, created.text
        read = await client.get(created.headers["location"], headers=headers)
        assert read.status_code == 200, read.text


def busiest_chain(events: list[Event]) -> list[Event]:
    """The events of the chain holding the most, in chain order (SQLite: chain 0, all of them)."""
    chains: dict[int, list[Event]] = {}
    for event in events:
        chains.setdefault(event["chain"], []).append(event)
    longest = max(chains.values(), key=len)
    return sorted(longest, key=lambda e: e["chain_seq"])


def swap_positions(a: Event, b: Event) -> list[Executable]:
    """Exchange two events' places in the log (seq and chain position), via a free slot."""
    return [
        update(EVENTS).where(EVENTS.c.seq == a["seq"]).values(seq=-1, chain_seq=-1),
        update(EVENTS)
        .where(EVENTS.c.seq == b["seq"])
        .values(seq=a["seq"], chain_seq=a["chain_seq"]),
        update(EVENTS).where(EVENTS.c.seq == -1).values(seq=b["seq"], chain_seq=b["chain_seq"]),
    ]


def swap_seqs(a: Event, b: Event) -> list[Executable]:
    """Exchange only two events' sequence numbers (their order in the global log)."""
    return [
        update(EVENTS).where(EVENTS.c.seq == a["seq"]).values(seq=-1),
        update(EVENTS).where(EVENTS.c.seq == b["seq"]).values(seq=a["seq"]),
        update(EVENTS).where(EVENTS.c.seq == -1).values(seq=b["seq"]),
    ]


def forged_row(*, seq: int, chain: int, chain_seq: int, prev_hash: str) -> Event:
    """An event an attacker adds, hashed correctly: the algorithm is public."""
    row: Event = {
        "seq": seq,
        "chain": chain,
        "chain_seq": chain_seq,
        "occurred_at": datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC),
        "actor_sub": "hv-system",
        "actor_org": "RX1",
        "action": "referral.read",
        "resource_type": "referral",
        "resource_id": "00000000-0000-4000-8000-000000000000",
        "outcome": "success",
        "request_id": "forged",
        "details": {},
        "prev_hash": prev_hash,
    }
    row["hash"] = recompute_hash(document_of(row))
    return row


@pytest.fixture
async def seeded(client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]) -> None:
    # 24 events: on PostgreSQL's 8 chains at least one chain holds 3 or more.
    await make_events(client, auth(scopes=ALL_SCOPES), 12)


# --- a clean trail -------------------------------------------------------------------------------


async def test_a_fresh_database_verifies_empty(settings: Settings) -> None:
    result = await verify(settings)
    assert result.valid
    assert result.events_checked == 0
    assert result.first_invalid_seq is None
    assert len(result.heads) == audit.AUDIT_CHAINS
    assert all(h.chain_seq == 0 and h.hash == GENESIS for h in result.heads)


async def test_untampered_chains_verify_and_link(
    seeded: None, settings: Settings, database_url: str
) -> None:
    result = await verify(settings)
    assert result.valid, result.problem
    assert result.first_invalid_seq is None
    events = await raw_events(database_url)
    assert result.events_checked == len(events) == 24

    chains: dict[int, list[Event]] = {}
    for event in events:
        chains.setdefault(event["chain"], []).append(event)
    heads = {h["chain"]: h for h in await raw_heads(database_url)}
    for chain, members in chains.items():
        members.sort(key=lambda e: e["chain_seq"])
        assert [e["chain_seq"] for e in members] == list(range(1, len(members) + 1))
        assert members[0]["prev_hash"] == GENESIS
        for before, after in zip(members, members[1:], strict=False):
            assert after["prev_hash"] == before["hash"]
            assert after["seq"] > before["seq"]
        for event in members:
            assert recompute_hash(document_of(event)) == event["hash"]
        last = members[-1]
        assert (heads[chain]["chain_seq"], heads[chain]["seq"], heads[chain]["hash"]) == (
            last["chain_seq"],
            last["seq"],
            last["hash"],
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_writes_one_chain_in_sequence_order(seeded: None, database_url: str) -> None:
    events = await raw_events(database_url)
    assert {e["chain"] for e in events} == {0}
    assert [e["seq"] for e in events] == list(range(1, 25))
    assert [e["chain_seq"] for e in events] == list(range(1, 25))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_serialises_parallel_writers_from_two_instances_onto_one_chain(
    settings: Settings,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    database_url: str,
) -> None:
    headers = auth(scopes=ALL_SCOPES)
    other = create_app(settings)
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other), base_url="http://testserver"
        ) as second,
    ):

        async def one(i: int) -> int:
            http = client if i % 2 else second
            if i % 3:
                response = await http.post(
                    "/v1/referrals", json=make_referral_body(), headers=headers
                )
            else:
                response = await http.get("/v1/referrals?limit=1", headers=headers)
            return response.status_code

        statuses = await asyncio.gather(*(one(i) for i in range(60)))
    assert sorted(set(statuses)) == [200, 201]
    result = await verify(settings)
    assert result.valid, result.problem
    events = await raw_events(database_url)
    assert [(e["chain"], e["chain_seq"], e["seq"]) for e in events] == [
        (0, n, n) for n in range(1, 61)
    ]


# --- edits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, value",
    [
        ("actor_org", "RX9"),
        ("actor_sub", "someone-else"),
        ("action", "referral.listed"),
        ("outcome", "denied"),
        ("resource_id", "11111111-1111-4111-8111-111111111111"),
        ("details", {"returned": 99}),
        ("occurred_at", datetime(2020, 1, 1, tzinfo=UTC)),
        ("request_id", "another-request"),
        # Absent from an event that had none: adding one changes the hashed document.
        ("correlation_id", "added-later"),
    ],
)
async def test_an_edited_field_is_found_and_named(
    seeded: None, settings: Settings, database_url: str, column: str, value: Any
) -> None:
    target = busiest_chain(await raw_events(database_url))[1]
    await tamper(
        database_url, update(EVENTS).where(EVENTS.c.seq == target["seq"]).values(**{column: value})
    )

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == target["seq"]
    assert result.events_checked == 24


@pytest.mark.parametrize("value", [None, "another-label"])
async def test_a_removed_or_changed_correlation_id_is_found(
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    settings: Settings,
    database_url: str,
    value: str | None,
) -> None:
    for i in range(4):
        created = await client.post(
            "/v1/referrals",
            json=make_referral_body(),
            headers={**auth(), "X-Request-ID": f"theirs-{i}"},
        )
        assert created.status_code == 201, created.text
    target = busiest_chain(await raw_events(database_url))[1]
    assert target["correlation_id"] is not None
    await tamper(
        database_url,
        update(EVENTS).where(EVENTS.c.seq == target["seq"]).values(correlation_id=value),
    )

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == target["seq"]


async def test_an_edit_with_the_hash_recomputed_is_found_at_the_next_event(
    seeded: None, settings: Settings, database_url: str
) -> None:
    chain = busiest_chain(await raw_events(database_url))
    target, following = chain[1], chain[2]
    edited = {**target, "outcome": "denied"}
    rehashed = recompute_hash(document_of(edited))
    await tamper(
        database_url,
        update(EVENTS).where(EVENTS.c.seq == target["seq"]).values(outcome="denied", hash=rehashed),
    )

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == following["seq"]


async def test_an_edited_last_event_is_found_against_its_head(
    seeded: None, settings: Settings, database_url: str
) -> None:
    last = busiest_chain(await raw_events(database_url))[-1]
    edited = {**last, "actor_org": "RX9"}
    await tamper(
        database_url,
        update(EVENTS)
        .where(EVENTS.c.seq == last["seq"])
        .values(actor_org="RX9", hash=recompute_hash(document_of(edited))),
    )

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == last["seq"]


# --- deletions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 1])
async def test_a_deleted_event_is_found_at_the_event_after_it(
    seeded: None, settings: Settings, database_url: str, position: int
) -> None:
    chain = busiest_chain(await raw_events(database_url))
    removed, following = chain[position], chain[position + 1]
    await tamper(database_url, delete(EVENTS).where(EVENTS.c.seq == removed["seq"]))

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == following["seq"]
    assert result.events_checked == 23


async def test_a_deleted_last_event_is_found_against_its_head(
    seeded: None, settings: Settings, database_url: str
) -> None:
    last = busiest_chain(await raw_events(database_url))[-1]
    await tamper(database_url, delete(EVENTS).where(EVENTS.c.seq == last["seq"]))

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == last["seq"]


async def test_a_cut_off_tail_with_the_head_rewound_is_found_only_against_an_anchor(
    seeded: None, settings: Settings, database_url: str
) -> None:
    anchor = await read_heads(settings)
    chain = busiest_chain(await raw_events(database_url))
    last, new_last = chain[-1], chain[-2]
    await tamper(
        database_url,
        delete(EVENTS).where(EVENTS.c.seq == last["seq"]),
        update(HEADS)
        .where(HEADS.c.chain == last["chain"])
        .values(chain_seq=new_last["chain_seq"], seq=new_last["seq"], hash=new_last["hash"]),
    )

    # The rewind is self-consistent: the database alone cannot show it...
    assert (await verify(settings)).valid
    # ...but the heads anchored before it can.
    result = await verify(settings, anchor=anchor)
    assert not result.valid
    assert result.first_invalid_seq == last["seq"]
    assert result.head_hash != audit.head_digest(anchor)


async def test_an_anchor_still_verifies_after_more_events_are_appended(
    seeded: None,
    settings: Settings,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
) -> None:
    anchor = await read_heads(settings)
    await make_events(client, auth(), 4)
    result = await verify(settings, anchor=anchor)
    assert result.valid, result.problem
    assert result.events_checked == 32


async def test_an_anchor_finds_an_anchored_event_rewritten_with_its_chain(
    seeded: None, settings: Settings, database_url: str
) -> None:
    """An attacker who re-hashes the rest of the chain and the head leaves a chain that verifies
    on its own; the anchored hash at that position no longer matches."""
    anchor = await read_heads(settings)
    chain = busiest_chain(await raw_events(database_url))
    statements: list[Executable] = []
    prev = chain[0]["prev_hash"]
    rewritten: list[Event] = []
    for event in chain:
        changed = {**event, "prev_hash": prev}
        if event is chain[0]:
            changed["outcome"] = "denied"
        changed["hash"] = recompute_hash(document_of(changed))
        rewritten.append(changed)
        prev = changed["hash"]
        statements.append(
            update(EVENTS)
            .where(EVENTS.c.seq == event["seq"])
            .values(
                outcome=changed["outcome"], prev_hash=changed["prev_hash"], hash=changed["hash"]
            )
        )
    statements.append(
        update(HEADS).where(HEADS.c.chain == chain[0]["chain"]).values(hash=rewritten[-1]["hash"])
    )
    await tamper(database_url, *statements)

    assert (await verify(settings)).valid
    result = await verify(settings, anchor=anchor)
    assert not result.valid
    assert result.first_invalid_seq == chain[-1]["seq"]


# --- insertions ----------------------------------------------------------------------------------


async def _next_seq(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.max(EVENTS.c.seq)))).scalar_one()) + 1
    finally:
        await engine.dispose()


async def test_an_event_inserted_after_a_head_is_found_and_named(
    seeded: None, settings: Settings, database_url: str
) -> None:
    last = busiest_chain(await raw_events(database_url))[-1]
    forged = forged_row(
        seq=await _next_seq(database_url),
        chain=last["chain"],
        chain_seq=last["chain_seq"] + 1,
        prev_hash=last["hash"],
    )
    await tamper(database_url, insert(EVENTS).values(**forged))

    result = await verify(settings)
    assert not result.valid
    # The forged event is the bad one, not the genuine event before it.
    assert result.first_invalid_seq == forged["seq"]


async def test_an_inserted_event_with_a_wrong_hash_is_found_and_named(
    seeded: None, settings: Settings, database_url: str
) -> None:
    last = busiest_chain(await raw_events(database_url))[-1]
    forged = forged_row(
        seq=await _next_seq(database_url),
        chain=last["chain"],
        chain_seq=last["chain_seq"] + 1,
        prev_hash=last["hash"],
    )
    forged["hash"] = last["hash"]  # copied, not computed
    await tamper(database_url, insert(EVENTS).values(**forged))

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == forged["seq"]


@pytest.mark.parametrize("chain", [audit.AUDIT_CHAINS, -1])
async def test_an_event_inserted_in_a_chain_without_a_head_is_found(
    seeded: None, settings: Settings, database_url: str, chain: int
) -> None:
    """A whole forged chain outside the heads table must not verify as a chain of its own."""
    forged = forged_row(
        seq=await _next_seq(database_url), chain=chain, chain_seq=1, prev_hash=GENESIS
    )
    await tamper(database_url, insert(EVENTS).values(**forged))

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == forged["seq"]


async def test_a_removed_head_row_does_not_hide_its_chain(
    seeded: None, settings: Settings, database_url: str
) -> None:
    chain = busiest_chain(await raw_events(database_url))
    await tamper(database_url, delete(HEADS).where(HEADS.c.chain == chain[0]["chain"]))

    result = await verify(settings)
    assert not result.valid


# --- reordering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("first, second", [(0, 2), (1, 2)])
async def test_two_swapped_events_are_found_at_the_earlier_one(
    seeded: None, settings: Settings, database_url: str, first: int, second: int
) -> None:
    chain = busiest_chain(await raw_events(database_url))
    a, b = chain[first], chain[second]
    await tamper(database_url, *swap_positions(a, b))

    result = await verify(settings)
    assert not result.valid
    assert result.first_invalid_seq == a["seq"]
    assert result.events_checked == 24


async def test_two_events_with_swapped_sequence_numbers_are_found_at_the_earlier_one(
    seeded: None, settings: Settings, database_url: str
) -> None:
    chain = busiest_chain(await raw_events(database_url))
    a, b = chain[0], chain[2]
    await tamper(database_url, *swap_seqs(a, b))

    result = await verify(settings)
    assert not result.valid
    # Both rows now fail their own hash; the earlier place in the log is the first bad one.
    assert result.first_invalid_seq == min(a["seq"], b["seq"])


# --- PostgreSQL: append-only ---------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET outcome = 'denied'",
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq = (SELECT min(seq) FROM audit_events)",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)",
        "TRUNCATE audit_events",
        "TRUNCATE audit_events CASCADE",
    ],
)
async def test_postgres_refuses_to_change_or_remove_audit_events(
    seeded: None, settings: Settings, database_url: str, statement: str
) -> None:
    before = await raw_events(database_url)
    engine = create_async_engine(database_url)
    try:
        with pytest.raises(DBAPIError) as refused:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()
    assert "append-only" in str(refused.value.orig)

    assert await raw_events(database_url) == before
    assert (await verify(settings)).valid


@pytest.mark.postgres_only
async def test_postgres_refuses_changes_on_every_row(seeded: None, database_url: str) -> None:
    """Row by row, with SQLAlchemy Core as the service writes: not one row can be rewritten."""
    before = await raw_events(database_url)
    engine = create_async_engine(database_url)
    try:
        for event in before[:3]:
            with pytest.raises(DBAPIError):
                async with engine.begin() as conn:
                    await conn.execute(
                        update(EVENTS).where(EVENTS.c.seq == event["seq"]).values(details={})
                    )
            with pytest.raises(DBAPIError):
                async with engine.begin() as conn:
                    await conn.execute(delete(EVENTS).where(EVENTS.c.seq == event["seq"]))
    finally:
        await engine.dispose()
    assert await raw_events(database_url) == before


NOW_FOR_MANY = datetime(2026, 3, 4, tzinfo=UTC)


def test_chaining_many_events_needs_one_to_as_many_as_the_head_has_numbers() -> None:
    ctx = RequestContext(Caller("sub", "RX1", frozenset()), "req", None)
    entry = audit.Entry(ctx, "referral.created", "referral", "r", "success", NOW_FOR_MANY, {})
    head = audit.HeadForMany(chain=0, chain_seq=0, hash=audit.GENESIS_HASH, seqs=[5])
    with pytest.raises(ValueError):
        audit.chain_events(head, [entry, entry])
    with pytest.raises(ValueError):
        audit.chain_events(head, [])
    one = audit.chain_events(head, [entry])
    assert one.last_seq == 5 and one.values["event_prev_hash"] == [audit.GENESIS_HASH]
    assert one.values["head_hash"] == one.hashes[0]
