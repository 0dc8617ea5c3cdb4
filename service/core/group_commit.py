"""Group commit in the app: requests in flight share one transaction, each answered after it.

Why (issue #15): on PostgreSQL a transaction per request costs BEGIN, COMMIT and a commit of
its own for every request, which was most of the database's CPU and a third of the workers'.
A batch pays them once for all the requests that arrived while the previous batch was in the
database.

How: a request queues what it wants written, with a future for its answer, and waits on the
future. While fewer than `flushes` batches are in the database, queuing starts a flush at once,
so a lone request waits for nothing (there is no timer); under load requests queue behind the
batches in flight, and batches grow with the load. A subclass says how a batch runs
(`_run`), and must answer or fail every item of it, once its transaction has ended.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from service.core.database import database_unavailable
from service.core.unit_of_work import UnitOfWork


class Waiting(Protocol):
    """A queued item: its request waits on `answer`."""

    answer: asyncio.Future[Any]


ItemT = TypeVar("ItemT", bound=Waiting)


class GroupCommit(Generic[ItemT]):
    """The queue and the flushes of one process; `_run` is the subclass's batch."""

    def __init__(self, units: UnitOfWork, *, max_batch: int, flushes: int = 2) -> None:
        self.units = units
        self.max_batch = max_batch
        self.flushes = flushes
        self._queue: deque[ItemT] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def _enqueue(self, item: ItemT) -> Any:
        """Queue `item` and wait for its answer."""
        self._queue.append(item)
        self._start_flush()
        # Shielded: a caller that goes away must not cancel its batch (nor its answer's future,
        # which the batch then sets); the item commits or not with the others.
        return await asyncio.shield(item.answer)

    async def close(self) -> None:
        """Wait for every batch in flight (the app's shutdown: no request is left unanswered)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _start_flush(self) -> None:
        if len(self._running) < self.flushes:
            # A context of its own: the batch serves many requests, so its log lines must not
            # carry the request id of whichever request happened to start it.
            task = asyncio.create_task(self._flush(), context=contextvars.Context())
            self._running.add(task)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    await self._run(batch)
                except BaseException as error:  # pragma: no cover - _run answers every item
                    fail(batch, error)
                    raise
        finally:
            # Gone from the running set in the same step as the last look at the queue, not in
            # a done-callback a loop turn later: an item queued in between would see every
            # flush still "running", start none, and wait for the next request to come along.
            self._running.discard(asyncio.current_task())

    def _take(self) -> list[ItemT]:
        """Up to `max_batch` queued items, in arrival order."""
        count = min(len(self._queue), self.max_batch)
        return [self._queue.popleft() for _ in range(count)]

    async def _run(self, batch: list[ItemT]) -> None:
        raise NotImplementedError

    async def _each_alone(
        self, items: list[ItemT], work: Callable[[AsyncSession, ItemT], Awaitable[Any]]
    ) -> None:
        """Each item's `work` in a unit of work of its own (what a failed batch hands back), so
        that one bad item fails alone. Once the database is found unable to serve, the rest
        get that error at once instead of each waiting for it again."""
        for n, item in enumerate(items):
            if item.answer.done():
                continue
            try:
                # No actor: a refusal is raised to the request, whose unit of work records it.
                async with self.units.begin() as session:
                    value = await work(session, item)
            except Exception as error:
                fail(items[n:] if database_unavailable(error) else [item], error)
            else:
                answer(item, value)


def answer(item: Waiting, value: Any) -> None:
    if not item.answer.done():
        item.answer.set_result(value)


def fail(items: Iterable[Waiting], error: BaseException) -> None:
    for item in items:
        if not item.answer.done():
            item.answer.set_exception(error)
