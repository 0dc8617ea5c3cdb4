"""The group-commit queue (service/core/group_commit.py): every queued item is answered, however
its arrival falls against the flushes' ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from service.core.group_commit import GroupCommit, answer
from service.core.unit_of_work import UnitOfWork


@dataclass(eq=False)
class _Item:
    value: int
    answer: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Echo(GroupCommit[_Item]):
    """Answers each item with its value; `on_batch` runs inside a batch, before it ends."""

    def __init__(self, *, flushes: int) -> None:
        # The unit of work is only for items run alone, which these batches never hand back.
        super().__init__(UnitOfWork(async_sessionmaker()), max_batch=8, flushes=flushes)
        self.batches: list[list[int]] = []
        self.on_batch: list[Any] = []

    async def _run(self, batch: list[_Item]) -> None:
        self.batches.append([item.value for item in batch])
        for hook in self.on_batch:
            hook()
        self.on_batch.clear()
        for item in batch:
            answer(item, item.value)


async def test_an_item_queued_as_the_last_flush_ends_starts_a_flush_of_its_own() -> None:
    commits = _Echo(flushes=1)
    late = _Item(2)

    def queue_late() -> None:
        # What a request does when it queues (_enqueue, before it awaits), run by the loop in
        # the turn right after the flush returned: before any done-callback of the flush.
        commits._queue.append(late)
        commits._start_flush()

    loop = asyncio.get_running_loop()
    commits.on_batch.append(lambda: loop.call_soon(queue_late))
    assert await commits._enqueue(_Item(1)) == 1
    # A liveness guard, not a speed target: a stranded item would wait for ever.
    assert await asyncio.wait_for(asyncio.shield(late.answer), timeout=10) == 2
    assert commits.batches == [[1], [2]]
    await commits.close()


async def test_items_queued_while_flushes_run_are_taken_by_them_in_order() -> None:
    commits = _Echo(flushes=2)
    answers = await asyncio.gather(*(commits._enqueue(_Item(n)) for n in range(20)))
    assert answers == list(range(20))
    assert sorted(v for batch in commits.batches for v in batch) == list(range(20))
    assert all(len(batch) <= 8 for batch in commits.batches)
    await commits.close()
    assert not commits._running
