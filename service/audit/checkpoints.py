"""Verified checkpoints of the audit chains: where the last clean verification of each chain
ended, so that the next one re-hashes only what was appended since (its SQL, in one place)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.audit.chain import ChainHead
from service.models import AUDIT_CHECKPOINTS

_CHECKPOINTS = AUDIT_CHECKPOINTS


async def read(reader: AsyncSession | AsyncConnection) -> list[ChainHead]:
    rows = (await reader.execute(select(_CHECKPOINTS).order_by(_CHECKPOINTS.c.chain))).all()
    return [ChainHead(int(r.chain), int(r.chain_seq), int(r.seq), str(r.hash)) for r in rows]


async def advance(db: AsyncConnection, reached: list[ChainHead], now: datetime) -> None:
    """Move each chain's checkpoint forward to `reached`, never back.

    Two verifications may run at once, each from its own snapshot: the one that saw less may
    commit last. Each wrote only positions it verified, so either is true; keeping the further
    one (the WHERE of the upsert) means a slower verification never undoes a faster one's work.
    Rows are written in chain order, so two verifications lock them in the same order.
    """
    if not reached:
        return
    insert = pg_insert if db.dialect.name == "postgresql" else sqlite_insert
    statement: Any = insert(_CHECKPOINTS)
    statement = statement.on_conflict_do_update(
        index_elements=[_CHECKPOINTS.c.chain],
        set_={
            "chain_seq": statement.excluded.chain_seq,
            "seq": statement.excluded.seq,
            "hash": statement.excluded.hash,
            "verified_at": statement.excluded.verified_at,
        },
        where=_CHECKPOINTS.c.chain_seq < statement.excluded.chain_seq,
    )
    rows = [{**h.to_dict(), "verified_at": now} for h in sorted(reached, key=lambda h: h.chain)]
    await db.execute(statement, rows)
