"""PostgreSQL's hot path (asyncpg statements) against the portable SQLAlchemy Core statements
that SQLite runs, both on PostgreSQL: the same inputs must store the very same rows, byte for
byte in the JSON columns, and read back the same records, keys and duplicates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from service.audit import chain, verification
from service.core.context import Caller, RequestContext
from service.core.database import create_engine, make_sessionmaker
from service.core.settings import Settings
from service.models import AUDIT_EVENTS, IDEMPOTENCY_KEYS, REFERRAL_MOVES, REFERRALS
from service.referrals import repository
from service.referrals.payloads import CURRENT_PAYLOAD_VERSION
from service.referrals.record import ReferralRecord, with_changes
from service.referrals.references import new_reference
from service.referrals.statuses import OPEN_STATUSES
from tests.factories import make_referral_body

pytestmark = pytest.mark.postgres_only

NOW = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
CTX = RequestContext(Caller("hv-system", "RX1", frozenset()), "req-1", "their-id-1")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, for_requests=True)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


def _referral(**changes: Any) -> ReferralRecord:
    record = ReferralRecord(
        id=str(uuid.uuid4()),
        reference=new_reference(),
        org="RX1",
        submitted_by="hv-system",
        received_at=NOW,
        updated_at=NOW,
        status="awaiting_triage",
        outcome="eligible",
        priority="urgent",
        eligible=True,
        provisional=False,
        safeguarding_alert=True,
        ruleset_id="default",
        ruleset_version="2026.1",
        ruleset_sha256="c" * 64,
        # Non-ASCII, nesting and key order all have to survive as sent.
        payload={**make_referral_body(), "zz": "Zoë ✓", "aa": [1, 2.5, None, True]},
        payload_version=CURRENT_PAYLOAD_VERSION,
        decision={"outcome": "eligible", "score": 3, "reasons": ["a", "b"]},
        version=1,
        triage=None,
        withdrawal=None,
        closure=None,
        match_nhs_number="9434765919",
        match_name_key="name-key-1",
    )
    return with_changes(record, **changes)


def _key(referral: ReferralRecord, key: str) -> repository.KeyRow:
    response = {"status": "awaiting_triage", "reference": referral.reference, "note": "é"}
    return repository.KeyRow("RX1", key, "d" * 64, referral.id, NOW, response)


async def _store_keyed(
    sessions: async_sessionmaker[AsyncSession], referral: ReferralRecord, key: str
) -> None:
    async with sessions() as session:
        db = await session.connection()
        await repository.store_with_key_and_head(db, referral, _key(referral, key))
        await session.commit()


async def _as_text(db: AsyncConnection, table: Any, where: str, value: Any) -> dict[str, Any]:
    """Every column as PostgreSQL prints it: JSON columns exactly as stored."""
    columns = ", ".join(f"{c.name}::text AS {c.name}" for c in table.columns)
    statement = text(f"SELECT {columns} FROM {table.name} WHERE {where} = :v")
    return dict((await db.execute(statement, {"v": value})).one()._mapping)


def _without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


async def test_intake_stores_the_same_rows_as_the_portable_statements(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fast, portable = _referral(), _referral()
    async with sessions() as session:
        db = await session.connection()
        stored = await repository.store_with_key_and_head(db, fast, _key(fast, "k-fast"))
        assert (stored.made, stored.keyed) == (True, True)
        assert stored.head is not None
        assert await repository.insert_referral(db, portable)
        await repository.insert_key(db, _key(portable, "k-portable"))
        await session.commit()

    async with sessions() as session:
        db = await session.connection()
        rows = [await _as_text(db, REFERRALS, "id", r.id) for r in (fast, portable)]
        assert _without(rows[0], "id", "reference") == _without(rows[1], "id", "reference")
        assert rows[0]["triage"] == "null"  # SQLAlchemy's JSON stores None as JSON null
        moves = [await _as_text(db, REFERRAL_MOVES, "referral_id", r.id) for r in (fast, portable)]
        assert _without(moves[0], "id", "referral_id") == _without(moves[1], "id", "referral_id")
        keys = [await _as_text(db, IDEMPOTENCY_KEYS, "referral_id", r.id) for r in (fast, portable)]
        ignored = ("key", "referral_id", "response")
        assert _without(keys[0], *ignored) == _without(keys[1], *ignored)
        assert keys[0]["response"].replace(fast.reference, "R") == keys[1]["response"].replace(
            portable.reference, "R"
        )
        # And read back: the same records, the same keys.
        read = [await repository.find(db, r.id) for r in (fast, portable)]
        assert read[0] == fast
        assert read[1] == portable
        found = [await repository.find_key(db, org="RX1", key=k) for k in ("k-fast", "k-portable")]
        assert found[0] is not None and found[1] is not None
        assert found[0].created_at == found[1].created_at == NOW
        assert found[0].response == _key(fast, "").response


async def test_a_taken_reference_or_key_stores_nothing_on_either_path(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = _referral()
    await _store_keyed(sessions, first, "k-1")
    clash = _referral(reference=first.reference)
    async with sessions() as session:
        db = await session.connection()
        stored = await repository.store_with_key_and_head(db, clash, _key(clash, "k-2"))
        assert (stored.made, stored.keyed) == (False, False)
        assert not await repository.insert_referral(db, clash)
        # A key another request committed first: the referral is made, the key is not.
        late = _referral()
        stored = await repository.store_with_key_and_head(db, late, _key(late, "k-1"))
        assert (stored.made, stored.keyed) == (True, False)
        unkeyed = _referral()
        stored = await repository.store_with_key_and_head(db, unkeyed, None)
        assert (stored.made, stored.keyed) == (True, False)
        await session.commit()
    async with sessions() as session:
        keys = (await session.execute(select(IDEMPOTENCY_KEYS.c.referral_id))).scalars().all()
        moves = (await session.execute(select(REFERRAL_MOVES.c.referral_id))).scalars().all()
        assert keys == [first.id]
        assert sorted(moves) == sorted([first.id, late.id, unkeyed.id])


async def test_the_key_lock_and_lookup_reads_what_the_portable_lookup_reads(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    referral = _referral()
    await _store_keyed(sessions, referral, "k-1")
    async with sessions() as session, sessions() as other:
        db = await session.connection()
        locked, found = await repository.lock_and_find_key(db, org="RX1", key="k-1", lock_id=7)
        assert locked
        assert found == await repository.find_key(db, org="RX1", key="k-1")
        assert found is not None and found.response == _key(referral, "").response
        assert await repository.lock_and_find_key(db, org="RX1", key="none", lock_id=8) == (
            True,
            None,
        )
        # Held until this transaction ends: another one cannot take it.
        other_db = await other.connection()
        locked, _ = await repository.lock_and_find_key(other_db, org="RX1", key="k-1", lock_id=7)
        assert not locked
        await session.rollback()
        await other.rollback()


async def test_an_appended_event_is_stored_as_the_portable_statements_store_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        db = await session.connection()
        for write in (chain.write_event_postgres, chain.write_event):
            head = await chain.take_head(db)
            row: dict[str, Any] = {
                "seq": head.next_seq,
                "chain": head.chain,
                "chain_seq": head.chain_seq + 1,
                "occurred_at": NOW,
                "actor_sub": "hv-system",
                "actor_org": "RX1",
                "action": "referral.created",
                "resource_type": "referral",
                "resource_id": "r-1",
                "outcome": "success",
                "request_id": "req-1",
                "correlation_id": "their-id-1",
                "details": {"reference": "R", "possible_duplicates": 0, "ü": [True, None]},
                "prev_hash": head.hash,
            }
            row["hash"] = chain.event_hash(chain.event_document(row))
            await write(db, row)
        await session.commit()
    async with sessions() as session:
        db = await session.connection()
        rows = (await db.execute(select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq))).all()
        assert len(rows) == 2
        fast, portable = [await _as_text(db, AUDIT_EVENTS, "seq", r.seq) for r in rows]
        positional = ("seq", "chain_seq", "prev_hash", "hash")
        assert _without(fast, *positional) == _without(portable, *positional)
        for stored in rows:
            assert chain.event_hash(chain.event_document(dict(stored._mapping))) == stored.hash
        heads = {h.chain: h for h in await chain.read_heads(db)}
        assert heads[rows[1].chain].hash == rows[1].hash
        assert heads[rows[1].chain].seq == rows[1].seq
        result = await verification.verify(session)
        assert result.to_dict()["valid"], result.to_dict()


async def test_the_status_read_finds_the_record_without_its_payload(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    referral = _referral()
    async with sessions() as session:
        db = await session.connection()
        await repository.store_with_key_and_head(db, referral, None)
        await session.commit()
    async with sessions() as session:
        db = await session.connection()
        assert await repository.find_status(db, str(uuid.uuid4())) is None
        found = await repository.find_status(db, referral.id)
        whole = await repository.find(db, referral.id)
        assert whole is not None and whole.payload
        assert found == with_changes(whole, payload={})


async def _store_duplicate_candidates(
    sessions: async_sessionmaker[AsyncSession],
) -> list[ReferralRecord]:
    """Referrals that match, or just fail to match, in every way a duplicate can."""
    earlier = NOW - timedelta(days=1)
    stored = [
        _referral(received_at=earlier),
        _referral(),
        _referral(org="RX2"),
        _referral(match_nhs_number=None),
        _referral(match_nhs_number=None, match_name_key="other"),
        _referral(status="closed"),
        _referral(match_nhs_number="1111111111"),
    ]
    async with sessions() as session:
        db = await session.connection()
        for referral in stored:
            assert await repository.insert_referral(db, referral)
        await session.commit()
    return stored


async def test_possible_duplicates_match_the_portable_query_in_every_shape(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stored = await _store_duplicate_candidates(sessions)
    statuses = tuple(sorted(str(s) for s in OPEN_STATUSES))
    async with sessions() as session:
        db = await session.connection()
        for nhs in ("9434765919", None):
            for name in ("name-key-1", None):
                for org in ("RX1", None):
                    asked: dict[str, Any] = {
                        "nhs_number": nhs,
                        "name_key": name,
                        "referral_id": stored[0].id,
                    }
                    fast = await repository.possible_duplicates(
                        db, **asked, open_statuses=frozenset(statuses), org=org, limit=3
                    )
                    if nhs is None and name is None:
                        assert fast == []
                        continue
                    # The portable query, as SQLite runs it, on PostgreSQL.
                    query = repository._duplicates_statement(
                        by_nhs=nhs is not None,
                        by_name=name is not None,
                        with_org=org is not None,
                        statuses=statuses,
                        limit=3,
                    )
                    rows = (await db.execute(query, {**asked, "org": org})).all()
                    assert [(d.id, d.received_at) for d in fast] == [
                        (r.id, r.received_at) for r in rows
                    ]
                    assert fast, (nhs, name, org)
        await session.rollback()


# --- Group commit: a batch's statements against one intake's -------------------------------


def _lookup(
    referral: ReferralRecord | None = None,
    *,
    key: str | None = None,
    lock_id: int | None = None,
    org: str = "RX1",
    **asked: Any,
) -> repository.IntakeLookup:
    """What a batch asks for one intake: by default a referral's duplicates, no key."""
    values: dict[str, Any] = {"nhs_number": None, "name_key": None, "duplicates_of": org}
    if referral is not None:
        values.update(nhs_number=referral.match_nhs_number, name_key=referral.match_name_key)
    values["referral_id"] = referral.id if referral is not None else str(uuid.uuid4())
    values.update(asked)
    return repository.IntakeLookup(org=org, key=key, lock_id=lock_id, **values)


def _entry(n: int) -> chain.Entry:
    ctx = RequestContext(Caller(f"sub-{n}", "RX1", frozenset()), f"req-{n}", None)
    return chain.Entry(ctx, "referral.created", "referral", f"r-{n}", "success", NOW, {"n": n})


async def _store_batch(
    db: AsyncConnection, records: list[ReferralRecord], keys: list[repository.KeyRow]
) -> list[str]:
    """As the group commit does: claim (taking a head), then store with the chained events."""
    claimed = await repository.claim_many(
        db, [_lookup(r) for r in records], open_statuses=frozenset({"awaiting_triage"})
    )
    assert claimed.head is not None and len(claimed.head.seqs) == len(records)
    events = chain.chain_events(claimed.head, [_entry(n) for n in range(len(records))])
    await repository.store_many(db, records, keys, events)
    return events.hashes


async def test_a_batch_stores_the_same_rows_as_one_intake_at_a_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batched, batched_unkeyed, single, single_unkeyed = (_referral() for _ in range(4))
    async with sessions() as session:
        db = await session.connection()
        await _store_batch(db, [batched, batched_unkeyed], [_key(batched, "k-batched")])
        await repository.store_with_key_and_head(db, single, _key(single, "k-single"))
        await repository.store_with_key_and_head(db, single_unkeyed, None)
        await session.commit()

    async with sessions() as session:
        db = await session.connection()
        for ours, theirs in ((batched, single), (batched_unkeyed, single_unkeyed)):
            rows = [await _as_text(db, REFERRALS, "id", r.id) for r in (ours, theirs)]
            assert _without(rows[0], "id", "reference") == _without(rows[1], "id", "reference")
            moves = [
                await _as_text(db, REFERRAL_MOVES, "referral_id", r.id) for r in (ours, theirs)
            ]
            assert _without(moves[0], "id", "referral_id") == _without(
                moves[1], "id", "referral_id"
            )
            assert await repository.find(db, ours.id) == ours
        keys = [
            await _as_text(db, IDEMPOTENCY_KEYS, "referral_id", r.id) for r in (batched, single)
        ]
        ignored = ("key", "referral_id", "response")
        assert _without(keys[0], *ignored) == _without(keys[1], *ignored)
        assert keys[0]["response"].replace(batched.reference, "R") == keys[1]["response"].replace(
            single.reference, "R"
        )
        found = await repository.find_key(db, org="RX1", key="k-batched")
        assert found is not None and found.referral_id == batched.id
        assert found.response == _key(batched, "").response
        count = select(func.count()).select_from(IDEMPOTENCY_KEYS)
        assert (await db.execute(count)).scalar_one() == 2


@pytest.mark.parametrize("taken", ["reference", "key"])
async def test_a_batch_with_a_taken_reference_or_key_stores_nothing(
    sessions: async_sessionmaker[AsyncSession], taken: str
) -> None:
    first = _referral()
    await _store_keyed(sessions, first, "k-1")
    fine = _referral()
    clash = _referral(reference=first.reference) if taken == "reference" else _referral()
    keys = [_key(fine, "k-2"), _key(clash, "k-1" if taken == "key" else "k-3")]
    async with sessions() as session:
        db = await session.connection()
        with pytest.raises(IntegrityError):
            await _store_batch(db, [fine, clash], keys)
        await session.rollback()
    async with sessions() as session:
        ids = (await session.execute(select(REFERRALS.c.id))).scalars().all()
        moves = (await session.execute(select(REFERRAL_MOVES.c.referral_id))).scalars().all()
        stored_keys = (await session.execute(select(IDEMPOTENCY_KEYS.c.key))).scalars().all()
        events = (await session.execute(select(AUDIT_EVENTS.c.seq))).scalars().all()
        assert (ids, moves, stored_keys, events) == ([first.id], [first.id], ["k-1"], [])
        result = await verification.verify(session)
        assert result.to_dict()["valid"], result.to_dict()


async def test_a_batch_locks_and_reads_keys_as_one_lookup_at_a_time_does(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    referral = _referral()
    await _store_keyed(sessions, referral, "k-1")
    lookups = [
        _lookup(key="k-1", lock_id=7),
        _lookup(key="new", lock_id=8),
        _lookup(key="k-1", lock_id=9, org="RX2"),  # another organisation's key of the same name
        _lookup(),  # no key: nothing to lock
    ]
    async with sessions() as session:
        db = await session.connection()
        singles = [
            await repository.lock_and_find_key(db, org=k.org, key=k.key, lock_id=k.lock_id)
            for k in lookups[:3]
        ]
        await session.rollback()
    statuses = frozenset({"awaiting_triage"})
    async with sessions() as session, sessions() as other:
        db = await session.connection()
        claimed = await repository.claim_many(db, lookups, open_statuses=statuses)
        assert [(c.locked, c.found) for c in claimed.intakes] == [*singles, (True, None)]
        assert [c.found is not None for c in claimed.intakes] == [True, False, False, False]
        # Every lock is this transaction's until it ends.
        other_db = await other.connection()
        held = await repository.claim_many(
            other_db, [*lookups[:3], _lookup(key="free", lock_id=10)], open_statuses=statuses
        )
        assert [c.locked for c in held.intakes] == [False, False, False, True]
        await session.rollback()
        await other.rollback()


async def test_a_batch_finds_the_duplicates_each_lookup_finds_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stored = await _store_duplicate_candidates(sessions)
    statuses = frozenset(str(s) for s in OPEN_STATUSES)
    lookups = [
        _lookup(
            referral_id=referral_id,
            nhs_number=nhs,
            name_key=name,
            duplicates_of=org,
            key=f"k-{n}" if n % 2 else None,
            lock_id=n,
        )
        for n, (referral_id, nhs, name, org) in enumerate(
            (referral_id, nhs, name, org)
            for referral_id in (stored[0].id, stored[3].id)
            for nhs in ("9434765919", "1111111111", None)
            for name in ("name-key-1", "other", None)
            for org in ("RX1", "RX2", None)
        )
    ]
    async with sessions() as session:
        db = await session.connection()
        claimed = await repository.claim_many(db, lookups, open_statuses=statuses, limit=3)
        singles = [
            await repository.possible_duplicates(
                db,
                referral_id=k.referral_id,
                nhs_number=k.nhs_number,
                name_key=k.name_key,
                open_statuses=statuses,
                org=k.duplicates_of,
                limit=3,
            )
            for k in lookups
        ]
        assert [c.duplicates for c in claimed.intakes] == singles
        assert sum(1 for found in singles if found) > len(lookups) // 3  # the shapes matched
        assert any(len(found) == 3 for found in singles)  # and the limit applied
        await session.rollback()


async def test_events_stored_together_chain_as_if_each_were_appended_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        db = await session.connection()
        hashes = await _store_batch(db, [_referral() for _ in range(3)], [])
        e = _entry(3)
        alone = await chain.append(
            db,
            e.ctx,
            action=e.action,
            resource_type=e.resource_type,
            resource_id=e.resource_id,
            outcome=e.outcome,
            now=e.now,
            details=e.details,
        )
        await session.commit()
    async with sessions() as session:
        db = await session.connection()
        rows = (await db.execute(select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq))).all()
        assert [r.hash for r in rows] == [*hashes, alone]
        together = [r for r in rows if r.hash in hashes]
        # One chain, consecutive places, each linked to the one before.
        assert len({r.chain for r in together}) == 1
        assert [r.chain_seq for r in together] == list(
            range(together[0].chain_seq, together[0].chain_seq + 3)
        )
        assert [r.prev_hash for r in together[1:]] == [r.hash for r in together[:-1]]
        assert [r.resource_id for r in together] == ["r-0", "r-1", "r-2"]
        for stored in rows:
            assert chain.event_hash(chain.event_document(dict(stored._mapping))) == stored.hash
        texts = [await _as_text(db, AUDIT_EVENTS, "seq", r.seq) for r in (together[0], rows[-1])]
        different = ("seq", "chain", "chain_seq", "prev_hash", "hash", "actor_sub")
        different += ("resource_id", "request_id", "details")
        assert _without(texts[0], *different) == _without(texts[1], *different)
        assert texts[0]["details"] == '{"n": 0}'
        heads = {h.chain: h for h in await chain.read_heads(db)}
        assert heads[together[-1].chain].hash in (together[-1].hash, alone)
        result = await verification.verify(session)
        assert result.to_dict()["valid"], result.to_dict()


async def test_a_batch_waits_for_a_head_when_every_head_is_busy(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    records = [_referral(), _referral()]
    async with sessions() as holder, sessions() as session:
        await holder.execute(text("SELECT chain FROM audit_chain_heads FOR UPDATE"))
        db = await session.connection()
        claimed = await repository.claim_many(
            db, [_lookup(r) for r in records], open_statuses=frozenset({"awaiting_triage"})
        )
        assert claimed.head is None and len(claimed.intakes) == 2  # read all the same
        waiting = asyncio.create_task(chain.wait_for_head(db, len(records)))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits rather than appending beside a held head
        await holder.rollback()
        head = await asyncio.wait_for(waiting, timeout=30)
        events = chain.chain_events(head, [_entry(0), _entry(1)])
        await repository.store_many(db, records, [], events)
        await session.commit()
    async with sessions() as session:
        result = await verification.verify(session)
        assert result.to_dict()["valid"], result.to_dict()
        stored = (await session.execute(select(AUDIT_EVENTS.c.hash))).scalars().all()
        assert sorted(stored) == sorted(events.hashes)
