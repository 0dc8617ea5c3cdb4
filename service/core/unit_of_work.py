"""The unit of work: the one owner of a transaction, for HTTP requests, the CLI and workers.

It opens the session, commits on success, rolls back on error and runs after-commit hooks;
domain events published in it reach their listeners inside the same transaction.
Use cases `flush()` or execute, never `commit()`. A refusal that is itself an auditable action
(access denied, a missing referral) is rolled back with everything else, and then recorded in
a transaction of its own, so nothing of the refused work is kept but the record of the refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.core.context import RequestContext
from service.core.errors import AuditNote, DomainError
from service.core.events import Listener, listen

# Records a refusal's audit event on `session` (service/audit provides it: core imports no
# other domain, so it is handed in by whoever builds the unit of work).
RefusalRecorder = Callable[[AsyncSession, RequestContext, AuditNote, datetime], Awaitable[None]]

_AFTER_COMMIT = "after_commit"


def after_commit(session: AsyncSession, hook: Callable[[], None]) -> None:
    """Run `hook` once the session's transaction has committed; never if it rolls back."""
    session.info.setdefault(_AFTER_COMMIT, []).append(hook)


class UnitOfWork:
    """Makes transactions; built once per process with the session factory and the clock."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        record_refusal: RefusalRecorder | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.record_refusal = record_refusal
        # Domain events' listeners (service/core/events.py), run inside each transaction.
        self.listeners = tuple(listeners)

    @asynccontextmanager
    async def begin(
        self, actor: Callable[[], RequestContext | None] = lambda: None
    ) -> AsyncIterator[AsyncSession]:
        """One transaction. `actor` is asked only when a refusal must be audited: an HTTP
        request learns who is calling after the transaction has begun."""
        async with self.sessions() as session:
            listen(session, self.listeners)
            try:
                yield session
            except DomainError as error:
                await self._rollback(session)
                ctx = actor()
                if error.audit is not None and ctx is not None and self.record_refusal:
                    await self.record_refusal(session, ctx, error.audit, self.clock())
                    await session.commit()
                raise
            except BaseException:
                await self._rollback(session)
                raise
            if session.in_transaction():
                # A session nothing used (a read whose event a batch committed, an intake that
                # a batch stored) has nothing to commit, and committing it is not free.
                await session.commit()
            for hook in session.info.pop(_AFTER_COMMIT, ()):
                hook()

    @staticmethod
    async def _rollback(session: AsyncSession) -> None:
        session.info.pop(_AFTER_COMMIT, None)  # nothing was committed: nothing to announce
        await session.rollback()
