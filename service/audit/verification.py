"""Verifying the audit chains: re-derive the hashes, name the earliest bad event, check anchors.

Two kinds of run. A full one re-derives every chain from its first event and also checks every
stored checkpoint against the event at its position (`referral-service audit verify --full`,
the auditor's tool). An incremental one starts each chain at its checkpoint, taking the
checkpoint's hash as the expected `prev_hash` of the next event, so it costs only the events
appended since (the HTTP endpoint, and the plain CLI). Tampering after a checkpoint is found by
either; tampering at or before one only by a full run, since the incremental run trusts what
an earlier run verified. Either run reports the last clean position of each chain, for the
caller to record as the chain's new checkpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from service.audit import chain as audit_chain
from service.audit import checkpoints as audit_checkpoints
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
    full: bool = True
    # The checkpoints an incremental run started from (none for a full run).
    started_from: list[ChainHead] = field(default_factory=list)
    # Each clean chain's head, where it moved past its start: the checkpoints to record.
    reached: list[ChainHead] = field(default_factory=list)

    @property
    def head_hash(self) -> str:
        return head_digest(self.heads)

    @property
    def events_before_checkpoints(self) -> int:
        return sum(c.chain_seq for c in self.started_from)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "events_checked": self.events_checked,
            "first_invalid_seq": self.first_invalid_seq,
            "problem": self.problem,
            "head_hash": self.head_hash,
            "heads": [h.to_dict() for h in self.heads],
            "mode": "full" if self.full else "incremental",
            "checkpoints": [c.to_dict() for c in self.started_from],
            "events_before_checkpoints": self.events_before_checkpoints,
        }


@asynccontextmanager
async def _snapshot(session: AsyncSession) -> AsyncIterator[AsyncSession | AsyncConnection]:
    """One consistent view of heads, checkpoints and events. Under PostgreSQL's READ COMMITTED
    each statement sees its own snapshot, so an append committed between reading the heads and
    the events would look like tampering: read all in one REPEATABLE READ, read-only
    transaction. SQLite's transactions already hold the only write lock."""
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


@dataclass
class _Walk:
    """The state of one pass over the events, chain by chain."""

    head_of: dict[int, ChainHead]
    # chain -> (next position, its expected prev_hash, the last sequence number)
    expected: dict[int, tuple[int, str, int]]
    # Positions whose stored hash must be seen (anchors, and in a full run checkpoints).
    pinned: set[tuple[int, int]]
    seen_at: dict[tuple[int, int], tuple[int, str]] = field(default_factory=dict)
    faults: list[tuple[int, str]] = field(default_factory=list)
    faulty: set[int] = field(default_factory=set)
    checked: int = 0

    def fault(self, seq: int, chain: int, problem: str) -> None:
        self.faulty.add(chain)
        self.faults.append((seq, f"chain {chain}: {problem}"))

    def event(self, row: Mapping[str, Any]) -> None:
        self.checked += 1
        chain, position, seq = int(row["chain"]), int(row["chain_seq"]), int(row["seq"])
        if (chain, position) in self.pinned:
            self.seen_at[(chain, position)] = (seq, str(row["hash"]))
        head = self.head_of.get(chain)
        problem: str | None
        if head is None:
            problem = "event in a chain that has no head"
        elif position > head.chain_seq:
            problem = "event beyond the chain's head"
        elif chain in self.faulty:
            # The chain is already broken; an event is still named if it is itself forged,
            # so that the earliest bad event is reported, not just the first one met.
            problem = (
                "hash does not match" if event_hash(event_document(row)) != row["hash"] else None
            )
        else:
            next_position, prev_hash, last_seq = self.expected.get(chain, (1, GENESIS_HASH, 0))
            problem = _fault(row, next_position, prev_hash, last_seq)
            if not problem:
                self.expected[chain] = (next_position + 1, str(row["hash"]), seq)
        if problem:
            self.fault(seq, chain, problem)


async def verify(
    session: AsyncSession,
    anchor: list[ChainHead] | None = None,
    *,
    incremental: bool = False,
) -> Verification:
    """Verify the chains and report the earliest bad event (by sequence number).

    With `anchor` (heads recorded earlier, outside the database), also prove that nothing at
    or before each anchored position was removed or rewritten: that catches a cut-off tail. An
    anchor can name positions before a checkpoint, so it needs a full run.
    """
    if anchor and incremental:
        raise ValueError("an anchor is checked by a full verification only")
    async with _snapshot(session) as reader:
        heads = await audit_chain.read_heads(reader)
        stored = await audit_checkpoints.read(reader)
        head_of = {h.chain: h for h in heads}
        anchored = {(a.chain, a.chain_seq): a for a in anchor or [] if a.chain_seq}
        walk = _Walk(head_of, {}, set(anchored))
        start: dict[int, ChainHead] = {}
        if incremental:
            start = _starting_points(walk, stored)
        else:
            walk.pinned |= {(c.chain, c.chain_seq) for c in stored}
        query: Select[Any] | CompoundSelect[Any] = (
            _after(start, sorted(head_of)) if start and head_of else select(_EVENTS)
        )
        ordered = query.order_by("chain", "chain_seq", "seq")
        result = await reader.stream(ordered.execution_options(yield_per=1000))
        async for record in result:
            walk.event(dict(record._mapping))
    for head in heads:
        if head.chain in walk.faulty:
            continue
        begun = start.get(head.chain)
        since = (begun.chain_seq + 1, begun.hash, begun.seq) if begun else (1, GENESIS_HASH, 0)
        next_position, last_hash, last_seq = walk.expected.get(head.chain, since)
        if head.chain_seq != next_position - 1 or head.hash != last_hash:
            walk.fault(head.seq, head.chain, "events missing before its head")
        elif head.seq != last_seq:
            # The head becomes the next checkpoint: it must name its last event entirely.
            walk.fault(head.seq, head.chain, "head's sequence number is not its last event's")
    for (chain, position), saved in anchored.items():
        if walk.seen_at.get((chain, position), (None, None))[1] != saved.hash:
            walk.fault(saved.seq, chain, "anchored event missing or changed")
    if not incremental:
        _check_checkpoints(walk, stored)
    reached = [
        h
        for h in heads
        if h.chain not in walk.faulty
        and h.chain_seq > (start[h.chain].chain_seq if h.chain in start else 0)
    ]
    outcome = Verification(
        True, walk.checked, None, None, heads, not incremental, list(start.values()), reached
    )
    if walk.faults:
        outcome.valid = False
        outcome.first_invalid_seq, outcome.problem = min(walk.faults)
    return outcome


def _starting_points(walk: _Walk, stored: list[ChainHead]) -> dict[int, ChainHead]:
    """Where an incremental run starts each chain: its checkpoint, if the checkpoint is
    plausible. One beyond its chain's head means events were removed after it was verified: a
    cut-off tail that the checkpoint, like an anchor, still shows."""
    start: dict[int, ChainHead] = {}
    for checkpoint in stored:
        head = walk.head_of.get(checkpoint.chain)
        if head is None:
            walk.fault(checkpoint.seq, checkpoint.chain, "checkpoint of a chain that has no head")
            continue
        if checkpoint.chain_seq > head.chain_seq:
            walk.fault(checkpoint.seq, checkpoint.chain, "head is behind its verified checkpoint")
        start[checkpoint.chain] = checkpoint
        walk.expected[checkpoint.chain] = (
            checkpoint.chain_seq + 1,
            checkpoint.hash,
            checkpoint.seq,
        )
    return start


def _after(start: dict[int, ChainHead], chains: list[int]) -> CompoundSelect[Any]:
    """The events an incremental run reads: those after each chain's checkpoint, and every
    event of a chain that has no head (each one a fault). One range of the unique index on the
    chain position per branch: an OR of the ranges in one WHERE would be a filter over the
    whole index, a cost that grows with the trail again."""
    t = _EVENTS.c
    ranges: list[ColumnElement[bool]] = [
        and_(t.chain == c, t.chain_seq > (start[c].chain_seq if c in start else 0)) for c in chains
    ]
    ranges += [t.chain < chains[0], t.chain > chains[-1]]
    ranges += [and_(t.chain > a, t.chain < b) for a, b in itertools.pairwise(chains) if b > a + 1]
    return union_all(*(select(_EVENTS).where(r) for r in ranges))


def _check_checkpoints(walk: _Walk, stored: list[ChainHead]) -> None:
    """A full run trusts no checkpoint: each must name an event that is there, unchanged. A
    forged one could otherwise hide tampering before it from every incremental run."""
    for checkpoint in stored:
        found = walk.seen_at.get((checkpoint.chain, checkpoint.chain_seq))
        if checkpoint.chain not in walk.head_of or found != (checkpoint.seq, checkpoint.hash):
            walk.fault(
                checkpoint.seq,
                checkpoint.chain,
                f"checkpoint at position {checkpoint.chain_seq} does not match the event there",
            )


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
