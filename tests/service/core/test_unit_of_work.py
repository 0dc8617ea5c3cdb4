"""The unit of work: commit on success, roll back on error, hooks after commit, refusals kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from service.core.context import Caller, RequestContext
from service.core.database import make_sessionmaker
from service.core.errors import AuditNote, NotFound, audited
from service.core.unit_of_work import UnitOfWork, after_commit
from service.models import REFERRALS

CTX = RequestContext(Caller("tester", "RX1", frozenset()), request_id="req-1")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def _touch(session: AsyncSession) -> None:
    """Some work that leaves a trace: an audit head moved."""
    await session.execute(text("UPDATE audit_chain_heads SET chain_seq = 99 WHERE chain = 0"))


async def _head_position(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        query = text("SELECT chain_seq FROM audit_chain_heads WHERE chain = 0")
        return int((await connection.execute(query)).scalar_one())


async def test_work_commits_and_then_runs_its_hooks(engine: AsyncEngine) -> None:
    ran: list[str] = []
    units = UnitOfWork(make_sessionmaker(engine))
    async with units.begin() as session:
        await _touch(session)
        after_commit(session, lambda: ran.append("hook"))
        assert ran == []  # not before the commit
    assert ran == ["hook"]
    assert await _head_position(engine) == 99


async def test_a_unit_of_work_nothing_used_runs_its_hooks_without_a_commit(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An intake a batch stored, a read whose event a batch committed: the request's own unit of
    # work never touched the database, and a commit of nothing still costs a round of SQLAlchemy.
    commits: list[AsyncSession] = []
    commit = AsyncSession.commit

    async def counted(self: AsyncSession) -> None:
        commits.append(self)
        await commit(self)

    monkeypatch.setattr(AsyncSession, "commit", counted)
    ran: list[str] = []
    units = UnitOfWork(make_sessionmaker(engine))
    async with units.begin() as session:
        after_commit(session, lambda: ran.append("hook"))
    assert (ran, commits) == (["hook"], [])
    async with units.begin() as session:
        await _touch(session)
    assert len(commits) == 1
    assert await _head_position(engine) == 99


async def test_an_error_rolls_everything_back_and_runs_no_hook(engine: AsyncEngine) -> None:
    ran: list[str] = []
    units = UnitOfWork(make_sessionmaker(engine))
    with pytest.raises(RuntimeError):
        async with units.begin() as session:
            await _touch(session)
            after_commit(session, lambda: ran.append("hook"))
            raise RuntimeError("boom")
    assert ran == []
    assert await _head_position(engine) == 0


async def test_an_audited_refusal_is_recorded_alone_after_the_rollback(
    engine: AsyncEngine,
) -> None:
    recorded: list[tuple[str, AuditNote, datetime]] = []

    async def record(
        session: AsyncSession, ctx: RequestContext, note: AuditNote, now: datetime
    ) -> None:
        # The refused work is already gone when the refusal is recorded.
        assert (await session.execute(select(func.count()).select_from(REFERRALS))).scalar() == 0
        recorded.append((ctx.request_id, note, now))

    units = UnitOfWork(make_sessionmaker(engine), clock=lambda: NOW, record_refusal=record)
    note = AuditNote("referral.read", "referral", "some-id", "not_found")
    with pytest.raises(NotFound):
        async with units.begin(lambda: CTX) as session:
            await _touch(session)
            raise audited(NotFound("No referral with this id."), note)
    assert recorded == [("req-1", note, NOW)]
    assert await _head_position(engine) == 0


async def test_a_refusal_without_a_known_caller_records_nothing(engine: AsyncEngine) -> None:
    recorded: list[AuditNote] = []

    async def record(_s: AsyncSession, _c: RequestContext, note: AuditNote, _n: datetime) -> None:
        recorded.append(note)

    units = UnitOfWork(make_sessionmaker(engine), record_refusal=record)
    with pytest.raises(NotFound):
        async with units.begin(lambda: None):
            raise audited(NotFound("x"), AuditNote("referral.read", "referral", None, "not_found"))
    assert recorded == []


async def test_the_refusal_recorder_commits_its_event(engine: AsyncEngine) -> None:
    from service.audit.refusals import record_refusal

    before = await _count(engine, "audit_events")
    units = UnitOfWork(make_sessionmaker(engine), clock=lambda: NOW, record_refusal=record_refusal)
    with pytest.raises(NotFound):
        async with units.begin(lambda: CTX) as session:
            await _touch(session)
            raise audited(NotFound("x"), AuditNote("referral.read", "referral", None, "not_found"))
    assert await _count(engine, "audit_events") == before + 1
    assert await _head_position(engine) == 1  # the refusal's own append, not the refused 99


async def test_published_events_reach_the_listeners_inside_the_transaction(
    engine: AsyncEngine,
) -> None:
    from service.core import events

    seen: list[tuple[bool, list[str]]] = []

    async def listener(session: AsyncSession, published: Any) -> None:
        seen.append((session.in_transaction(), [e.type for e in published]))

    event = events.ReferralEvent(events.REFERRAL_CREATED, "r-1", "RX1", False, False, NOW, {})
    async with UnitOfWork(make_sessionmaker(engine), listeners=(listener,)).begin() as session:
        await _touch(session)
        await events.publish(session, [event])
        await events.publish(session, [])  # nothing to say: listeners are not called
    async with UnitOfWork(make_sessionmaker(engine)).begin() as session:
        await events.publish(session, [event])  # no listeners: nothing happens
    assert seen == [(True, ["referral.created"])]
