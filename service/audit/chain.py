"""The tamper-evident audit trail: a fixed set of hash chains, appended in the caller's transaction.

Why several chains: an append locks its chain's head row until the transaction commits, and a
commit waits for an fsync. With one chain, the whole system would commit at most one audited
request per fsync. With AUDIT_CHAINS chains, that many transactions can hold a head at once and
PostgreSQL's group commit flushes them together. Each chain verifies on its own; together they
still catch every edit, deletion, insertion and reordering.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.core import metrics, pg_raw
from service.core.canonical import canonical_json, sha256_hex, utc_timestamp
from service.core.context import RequestContext
from service.models import AUDIT_CHAIN_HEADS, AUDIT_EVENTS

AUDIT_CHAINS = 32  # seeded by migrations 0001 (8) and 0003 (to 32)
GENESIS_HASH = "0" * 64

_EVENTS = AUDIT_EVENTS
_HEADS = AUDIT_CHAIN_HEADS

# Take the first head nobody holds; only if every chain is busy, wait for one chosen at random.
# Lowest chain first: one request at a time keeps to chain 0, and only concurrent ones spread.
# (Also embedded by the intake statement, which takes its head in the same round trip.)
PG_FREE_HEAD_SQL = (
    "SELECT chain, chain_seq, hash, nextval(pg_get_serial_sequence('audit_events', 'seq')) "
    "AS seq FROM audit_chain_heads ORDER BY chain LIMIT 1 FOR UPDATE SKIP LOCKED"
)
# PostgreSQL's statements run on asyncpg in the session's transaction (service/core/pg_raw.py):
# appends are on every request's path, and SQLAlchemy Core cost as much CPU as asyncpg itself.
_PG_TAKE_FREE_HEAD = pg_raw.Statement.of(PG_FREE_HEAD_SQL)
_PG_WAIT_FOR_HEAD = pg_raw.Statement.of(
    "SELECT chain, chain_seq, hash, nextval(pg_get_serial_sequence('audit_events', 'seq')) "
    "FROM audit_chain_heads WHERE chain = :chain FOR UPDATE"
)
# SQLite transactions start with BEGIN IMMEDIATE, so writers are already serialised: one chain.
_SQLITE_TAKE_HEAD = text(
    "SELECT chain, chain_seq, hash, (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events) "
    "FROM audit_chain_heads WHERE chain = 0"
)


# Built once and reused: statement construction and compilation are not free per request.
_ADD_EVENT = insert(_EVENTS)
_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.chain == bindparam("head_chain"))
    .values(
        chain_seq=bindparam("head_chain_seq"),
        seq=bindparam("head_seq"),
        hash=bindparam("head_hash"),
    )
)
# PostgreSQL: the event and its chain's new head in one round trip while the head is locked
# (PostgreSQL runs a data-modifying CTE exactly once, whether or not the outer statement reads
# it). The head takes the event's own position and hash.
_EVENT_COLUMNS = tuple(c.name for c in _EVENTS.columns)
_PG_APPEND = pg_raw.Statement.of(
    f"WITH appended AS (INSERT INTO audit_events ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _EVENT_COLUMNS)})) "
    "UPDATE audit_chain_heads SET chain_seq = :chain_seq, seq = :seq, hash = :hash "
    "WHERE chain = :chain"
)


def event_hash(event: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every field of the event except `hash` itself."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return sha256_hex(canonical_json(body))


def event_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed form of an event row (also the shape the API returns, with `hash`).

    `correlation_id` (the caller's own X-Request-ID, migration 0007) is in the document only
    when there is one: every event stored before it existed, and every event of a request that
    sent none, hashes exactly as it always did, while a correlation id that is present cannot be
    changed, added or removed without breaking the hash.
    """
    document = {
        "seq": int(row["seq"]),
        "chain": int(row["chain"]),
        "chain_seq": int(row["chain_seq"]),
        "occurred_at": utc_timestamp(row["occurred_at"]),
        "actor": {"sub": row["actor_sub"], "org": row["actor_org"]},
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "outcome": row["outcome"],
        "request_id": row["request_id"],
        "details": row["details"],
        "prev_hash": row["prev_hash"],
    }
    correlation_id = row.get("correlation_id")
    if correlation_id is not None:
        document["correlation_id"] = correlation_id
    return document


@dataclass(frozen=True, slots=True)
class TakenHead:
    """A chain's head, locked by this transaction, and the sequence number for the next event."""

    chain: int
    chain_seq: int
    hash: str
    next_seq: int


async def take_head(db: AsyncConnection) -> TakenHead:
    """Lock a chain's head until the transaction ends: take it late, just before appending."""
    if db.dialect.name == "postgresql":
        head = await pg_raw.fetchrow(db, _PG_TAKE_FREE_HEAD, {})
        if head is None:
            chosen = random.randrange(AUDIT_CHAINS)
            head = await pg_raw.fetchrow(db, _PG_WAIT_FOR_HEAD, {"chain": chosen})
    else:
        head = (await db.execute(_SQLITE_TAKE_HEAD)).one()
    return TakenHead(int(head[0]), int(head[1]), str(head[2]), int(head[3]))


@dataclass(frozen=True, slots=True)
class Entry:
    """One event to append: everything but its place in the chain."""

    ctx: RequestContext
    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    now: datetime
    details: dict[str, Any]


def _event_row(
    entry: Entry, *, seq: int, chain: int, chain_seq: int, prev_hash: str
) -> dict[str, Any]:
    """The stored row of `entry` at its place in a chain, with its hash."""
    row: dict[str, Any] = {
        "seq": seq,
        "chain": chain,
        "chain_seq": chain_seq,
        "occurred_at": entry.now,
        "actor_sub": entry.ctx.caller.sub,
        "actor_org": entry.ctx.caller.org,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "outcome": entry.outcome,
        "request_id": entry.ctx.request_id,
        "correlation_id": entry.ctx.correlation_id,
        "details": entry.details,
        "prev_hash": prev_hash,
    }
    row["hash"] = event_hash(event_document(row))
    return row


async def append(
    db: AsyncConnection,
    ctx: RequestContext,
    *,
    action: str,
    resource_type: str,
    resource_id: str | None,
    outcome: str,
    now: datetime,
    details: dict[str, Any] | None = None,
    head: TakenHead | None = None,
) -> str:
    """Append one event to a chain in the session's transaction; returns the event's hash.

    Call it last in a unit of work: the chain's head stays locked until the commit. A caller
    that already holds a head (taken in one of its own statements) passes it in.
    `details` must hold ids, codes and counts only, never personal data.
    """
    entry = Entry(ctx, action, resource_type, resource_id, outcome, now, details or {})
    return await append_entry(db, entry, head=head)


async def append_entry(db: AsyncConnection, entry: Entry, *, head: TakenHead | None = None) -> str:
    """`append`, for an event already made."""
    if head is None:
        head = await take_head(db)
    chain, chain_seq, prev_hash, seq = head.chain, head.chain_seq + 1, head.hash, head.next_seq
    row = _event_row(entry, seq=seq, chain=chain, chain_seq=chain_seq, prev_hash=prev_hash)
    if db.dialect.name == "postgresql":
        await write_event_postgres(db, row)
    else:
        await write_event(db, row)
    metrics.observe_audit_seq(seq)
    return str(row["hash"])


async def write_event_postgres(db: AsyncConnection, row: dict[str, Any]) -> None:
    """The event and its chain's new head in one statement, on asyncpg (PostgreSQL)."""
    # JSON text for asyncpg: what SQLAlchemy's JSON type would have sent.
    await pg_raw.fetch(db, _PG_APPEND, {**row, "details": json.dumps(row["details"])})


async def write_event(db: AsyncConnection, row: dict[str, Any]) -> None:
    """The event and its chain's new head, with SQLAlchemy Core: SQLite's way (and, in the
    tests, the reference that PostgreSQL's statement is compared with)."""
    await db.execute(_ADD_EVENT, row)
    await db.execute(
        _MOVE_HEAD,
        {
            "head_chain": row["chain"],
            "head_chain_seq": row["chain_seq"],
            "head_seq": row["seq"],
            "head_hash": row["hash"],
        },
    )


# --- Appending many events at once (group commit, PostgreSQL) --------------------------------

# One head and `:events` sequence numbers: the subquery a batch's first statement embeds
# (service/referrals/repository.py) to take a free head with its other reads...
PG_FREE_HEAD_FOR_MANY_SQL = (
    "SELECT head.chain, head.chain_seq, head.hash, ARRAY(SELECT nextval("
    "pg_get_serial_sequence('audit_events', 'seq')) FROM generate_series(1, :events::integer)) "
    "AS seqs FROM (SELECT chain, chain_seq, hash FROM audit_chain_heads "
    "ORDER BY chain LIMIT 1 FOR UPDATE SKIP LOCKED) AS head"
)
_PG_TAKE_FREE_HEAD_FOR_MANY = pg_raw.Statement.of(PG_FREE_HEAD_FOR_MANY_SQL)
# ...and, when every head was busy, waiting for one chosen at random, like take_head().
_PG_WAIT_FOR_HEAD_FOR_MANY = pg_raw.Statement.of(
    "SELECT chain, chain_seq, hash, ARRAY(SELECT nextval("
    "pg_get_serial_sequence('audit_events', 'seq')) FROM generate_series(1, :events::integer)) "
    "AS seqs FROM audit_chain_heads WHERE chain = :chain FOR UPDATE"
)
# The events, in chain order (one array per column), and their chain's head moved to the last:
# the parts of the statement that stores a batch, which appends its events in the same trip.
PG_APPEND_EVENTS_SQL = (
    f"INSERT INTO audit_events ({', '.join(_EVENT_COLUMNS)}) "
    f"{pg_raw.unnest_rows(_EVENTS, _EVENT_COLUMNS, prefix='event_')}"
)
PG_MOVE_HEAD_SQL = (
    "UPDATE audit_chain_heads SET chain_seq = :head_chain_seq, seq = :head_seq, "
    "hash = :head_hash WHERE chain = :head_chain"
)
# Events on their own (the reads' group commit): both parts in one round trip.
_PG_APPEND_MANY = pg_raw.Statement.of(
    f"WITH appended AS ({PG_APPEND_EVENTS_SQL}) {PG_MOVE_HEAD_SQL}"
)


@dataclass(frozen=True, slots=True)
class HeadForMany:
    """A chain's head, locked until the transaction ends, and sequence numbers for events."""

    chain: int
    chain_seq: int
    hash: str
    seqs: list[int]

    @classmethod
    def of(cls, row: Any) -> HeadForMany:
        # Drawn in one statement, the numbers come back in no promised order.
        seqs = sorted(int(s) for s in row["seqs"])
        return cls(int(row["chain"]), int(row["chain_seq"]), str(row["hash"]), seqs)


async def wait_for_head(db: AsyncConnection, events: int) -> HeadForMany:
    """PostgreSQL: a head and `events` sequence numbers, waiting for a chain if need be."""
    chosen = {"chain": random.randrange(AUDIT_CHAINS), "events": events}
    return HeadForMany.of(await pg_raw.fetchrow(db, _PG_WAIT_FOR_HEAD_FOR_MANY, chosen))


@dataclass(frozen=True, slots=True)
class Chained:
    """Events chained on a head, ready for PG_APPEND_EVENTS_SQL and PG_MOVE_HEAD_SQL."""

    values: dict[str, Any]
    hashes: list[str]
    last_seq: int


def chain_events(head: HeadForMany, entries: list[Entry]) -> Chained:
    """Chain `entries`, in order, after `head`: each event links to the one before it exactly
    as if each had been appended alone, so verification cannot tell the difference."""
    if not entries or len(entries) > len(head.seqs):
        raise ValueError("between one event and as many as the head has sequence numbers")
    chain_seq, prev_hash = head.chain_seq, head.hash
    rows: list[dict[str, Any]] = []
    for entry, seq in zip(entries, head.seqs, strict=False):
        chain_seq += 1
        row = _event_row(entry, seq=seq, chain=head.chain, chain_seq=chain_seq, prev_hash=prev_hash)
        prev_hash = row["hash"]
        rows.append(row)
    values: dict[str, Any] = {
        f"event_{name}": [row[name] for row in rows] for name in _EVENT_COLUMNS
    }
    values["event_details"] = [json.dumps(row["details"]) for row in rows]
    last = rows[-1]
    values.update(
        head_chain=head.chain,
        head_chain_seq=last["chain_seq"],
        head_seq=last["seq"],
        head_hash=last["hash"],
    )
    return Chained(values, [str(row["hash"]) for row in rows], int(last["seq"]))


def appended(events: Chained) -> None:
    """Call once the statement that wrote `events` has run."""
    metrics.observe_audit_seq(events.last_seq)


async def append_many(db: AsyncConnection, entries: list[Entry]) -> list[str]:
    """PostgreSQL: `entries`, in order, on one chain in the connection's transaction, in two
    round trips whatever their number (a free head, else waiting for one; then the events and
    the head's move); returns their hashes. Call it last: the head stays locked until the end."""
    row = await pg_raw.fetchrow(db, _PG_TAKE_FREE_HEAD_FOR_MANY, {"events": len(entries)})
    head = HeadForMany.of(row) if row is not None else await wait_for_head(db, len(entries))
    events = chain_events(head, entries)
    await pg_raw.fetch(db, _PG_APPEND_MANY, events.values)
    appended(events)
    return events.hashes


@dataclass(frozen=True, slots=True)
class ChainHead:
    chain: int
    chain_seq: int
    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "chain_seq": self.chain_seq,
            "seq": self.seq,
            "hash": self.hash,
        }


def head_digest(heads: list[ChainHead]) -> str:
    """One hash naming every chain's head: the value to anchor outside the database."""
    return sha256_hex(canonical_json([h.to_dict() for h in sorted(heads, key=lambda h: h.chain)]))


async def read_heads(reader: AsyncSession | AsyncConnection) -> list[ChainHead]:
    rows = (await reader.execute(select(_HEADS).order_by(_HEADS.c.chain))).all()
    return [ChainHead(int(r.chain), int(r.chain_seq), int(r.seq), str(r.hash)) for r in rows]
