"""Verifying the audit chains: re-derive every hash, name the earliest bad event, check anchors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from service.audit import chain as audit_chain
from service.audit.chain import GENESIS_HASH, ChainHead, event_document, event_hash, head_digest
from service.models import AUDIT_EVENTS

_EVENTS = AUDIT_EVENTS


@dataclass
class Verification:
    valid: bool
    events_checked: int
    first_invalid_seq: int | None
    problem: str | None
    heads: list[ChainHead] = field(default_factory=list)

    @property
    def head_hash(self) -> str:
        return head_digest(self.heads)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "events_checked": self.events_checked,
            "first_invalid_seq": self.first_invalid_seq,
            "problem": self.problem,
            "head_hash": self.head_hash,
            "heads": [h.to_dict() for h in self.heads],
        }


@asynccontextmanager
async def _snapshot(session: AsyncSession) -> AsyncIterator[AsyncSession | AsyncConnection]:
    """One consistent view of heads and events. Under PostgreSQL's READ COMMITTED each statement
    sees its own snapshot, so an append committed between reading the heads and the events
    would look like tampering: read both in one REPEATABLE READ, read-only transaction. SQLite's
    transactions already hold the only write lock."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        yield session
        return
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="REPEATABLE READ")
        await connection.execute(text("SET TRANSACTION READ ONLY"))
        yield connection
        await connection.rollback()


async def verify(session: AsyncSession, anchor: list[ChainHead] | None = None) -> Verification:
    """Re-derive every chain and report the earliest bad event (by sequence number).

    With `anchor` (heads recorded earlier, outside the database), also prove that nothing at
    or before each anchored position was removed or rewritten: that catches a cut-off tail.
    """
    async with _snapshot(session) as reader:
        heads = await audit_chain.read_heads(reader)
        head_of = {h.chain: h for h in heads}
        anchored = {(a.chain, a.chain_seq): a for a in anchor or [] if a.chain_seq}
        seen_at_anchor: dict[tuple[int, int], str] = {}
        faults: list[tuple[int, str]] = []
        checked = 0
        expected: dict[int, tuple[int, str, int]] = {}  # chain -> (next position, hash, seq)
        faulty: set[int] = set()
        query = select(_EVENTS).order_by(_EVENTS.c.chain, _EVENTS.c.chain_seq, _EVENTS.c.seq)
        result = await reader.stream(query.execution_options(yield_per=1000))
        async for record in result:
            checked += 1
            row: dict[str, Any] = dict(record._mapping)
            chain, position, seq = int(row["chain"]), int(row["chain_seq"]), int(row["seq"])
            if (chain, position) in anchored:
                seen_at_anchor[(chain, position)] = str(row["hash"])
            head = head_of.get(chain)
            if head is None:
                fault: str | None = "event in a chain that has no head"
            elif position > head.chain_seq:
                fault = "event beyond the chain's head"
            elif chain in faulty:
                # The chain is already broken; an event is still named if it is itself forged,
                # so that the earliest bad event is reported, not just the first one met.
                fault = (
                    "hash does not match"
                    if event_hash(event_document(row)) != row["hash"]
                    else None
                )
            else:
                next_seq, prev_hash, last_seq = expected.get(chain, (1, GENESIS_HASH, 0))
                fault = _fault(row, next_seq, prev_hash, last_seq)
                if not fault:
                    expected[chain] = (next_seq + 1, str(row["hash"]), seq)
            if fault:
                faulty.add(chain)
                faults.append((seq, f"chain {chain}: {fault}"))
    for head in heads:
        if head.chain in faulty:
            continue
        next_seq, last_hash, _ = expected.get(head.chain, (1, GENESIS_HASH, 0))
        if head.chain_seq != next_seq - 1 or head.hash != last_hash:
            faults.append((head.seq, f"chain {head.chain}: events missing before its head"))
    for (chain, position), saved in anchored.items():
        if seen_at_anchor.get((chain, position)) != saved.hash:
            faults.append((saved.seq, f"chain {chain}: anchored event missing or changed"))
    if not faults:
        return Verification(True, checked, None, None, heads)
    seq, problem = min(faults)
    return Verification(False, checked, seq, problem, heads)


def _fault(row: Mapping[str, Any], next_seq: int, prev_hash: str, last_seq: int) -> str | None:
    if int(row["chain_seq"]) != next_seq:
        return f"expected position {next_seq}, found {int(row['chain_seq'])}"
    if row["prev_hash"] != prev_hash:
        return "prev_hash does not match the previous event"
    if int(row["seq"]) <= last_seq:
        return "sequence number out of order"
    if event_hash(event_document(row)) != row["hash"]:
        return "hash does not match the event's content"
    return None
