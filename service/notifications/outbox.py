"""The listener that turns domain events into outbox rows, in the transaction that made them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from service.core.events import ReferralEvent
from service.core.unit_of_work import after_commit
from service.notifications import repository

# The dispatchers running in this process: a commit that wrote deliveries wakes them at
# once, so a local delivery does not wait for the next poll.
_WAKERS: set[asyncio.Event] = set()


def new_event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def nudge() -> None:
    for waker in _WAKERS:
        waker.set()


def register(waker: asyncio.Event) -> None:
    _WAKERS.add(waker)


def unregister(waker: asyncio.Event) -> None:
    _WAKERS.discard(waker)


async def write(session: AsyncSession, events: Sequence[ReferralEvent]) -> None:
    """Write one delivery per event and subscription that wants it (none: nothing written)."""
    db = await session.connection()
    written = await repository.insert_events(db, [(new_event_id(), e) for e in events])
    if written:
        after_commit(session, nudge)
