"""The audit event for a refusal (access denied, not found), for the unit of work to record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit import chain
from service.core.context import RequestContext
from service.core.errors import AuditNote


async def record_refusal(
    session: AsyncSession, ctx: RequestContext, note: AuditNote, now: datetime
) -> None:
    await chain.append(
        await session.connection(),
        ctx,
        action=note.action,
        resource_type=note.resource_type,
        resource_id=note.resource_id,
        outcome=note.outcome,
        now=now,
        details=note.details,
    )
