"""Readiness: the database answers and its schema is at the latest migration."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.migrate import current_revision, head_revision

READY_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    database: str  # "ok", "unreachable" or "not_migrated"
    revision: str | None


async def readiness(engine: AsyncEngine) -> Readiness:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            revision = await current_revision(engine)
    except (SQLAlchemyError, OSError, TimeoutError):
        return Readiness(False, "unreachable", None)
    if revision != head_revision():
        return Readiness(False, "not_migrated", revision)
    return Readiness(True, "ok", revision)
