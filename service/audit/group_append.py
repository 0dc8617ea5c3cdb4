"""Group commit of the reads' audit events on PostgreSQL: one transaction for all in flight.

(A read here is any request that writes nothing but its audit event: the reads, and the
eligibility dry run.)

Why (issue #15): every read is audited, and a read's event took a transaction of its own:
BEGIN, the audit head, the event, COMMIT, four round trips and a commit for a read whose
answer needs one statement. Now a read runs its statement on its own (no transaction) and hands
its event here; a batch appends every queued event in one transaction of four round trips,
chained one after another on one head exactly as if each had been appended alone.

A read is answered only once its event has committed: no reader sees data whose reading is not
on the record. If a batch cannot commit because the database cannot serve, every read in it
fails (a 503), as a single read would. Any other failure is not expected (the events are made
here, from ids and codes); each event of that batch is then appended alone in a transaction of
its own, so one bad event fails one read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit import chain
from service.core.database import database_unavailable
from service.core.group_commit import GroupCommit, answer, fail
from service.core.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Event:
    entry: chain.Entry
    answer: asyncio.Future[str]


class AuditBatches(GroupCommit[_Event]):
    """The reads' audit events for one process; built once with the process's unit of work."""

    def __init__(self, units: UnitOfWork, *, max_batch: int = 64, flushes: int = 2) -> None:
        super().__init__(units, max_batch=max_batch, flushes=flushes)

    async def append(self, entry: chain.Entry) -> str:
        """`chain.append_entry` in a transaction shared with the other events in flight;
        returns the event's hash once it has committed."""
        item = _Event(entry, asyncio.get_running_loop().create_future())
        appended: str = await self._enqueue(item)
        return appended

    async def _run(self, batch: list[_Event]) -> None:
        try:
            async with self.units.begin() as session:
                db = await session.connection()
                hashes = await chain.append_many(db, [item.entry for item in batch])
        except Exception as error:
            if database_unavailable(error):
                fail(batch, error)  # alone, each would wait as long again
                return
            # Only the error's class: its text may quote values.
            log.error(
                "audit batch failed (%s); its events are appended alone", type(error).__name__
            )
            await self._alone(batch)
            return
        for item, appended in zip(batch, hashes, strict=True):
            answer(item, appended)

    async def _alone(self, batch: list[_Event]) -> None:
        async def one(session: AsyncSession, item: _Event) -> str:
            return await chain.append_entry(await session.connection(), item.entry)

        await self._each_alone(batch, one)


async def record(session: AsyncSession, batches: AuditBatches | None, entry: chain.Entry) -> None:
    """The audit event of a request that writes nothing else: committed in a batch before this
    returns (`batches`, PostgreSQL), or appended in the session's transaction, to commit with
    it. Either way the caller is answered only once the event is durable."""
    if batches is None:
        await chain.append_entry(await session.connection(), entry)
    else:
        await batches.append(entry)
