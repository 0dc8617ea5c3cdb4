"""Readiness: the database answers and its schema is at the latest migration.

A revision this code does not know is newer than this code: a release migrates before its pods
start, and migrations are written expand-then-contract, so the pods still running the previous
release stay ready while the new ones come up instead of all dropping out of the Service.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.database import refusal_cause
from service.core.migrate import head_revision, is_known

READY_TIMEOUT_SECONDS = 2.0

logger = logging.getLogger("service.core.health")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    # "ok", "unreachable", "refused" (the server answered but will not let us in: wrong
    # database name, role, password or TLS root certificate) or "not_migrated"
    database: str
    revision: str | None


async def readiness(engine: AsyncEngine) -> Readiness:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            try:
                result = await connection.execute(text("SELECT version_num FROM alembic_version"))
                revision = result.scalar_one_or_none()
            except SQLAlchemyError:
                return Readiness(False, "not_migrated", None)  # no version table yet
    # asyncpg raises its own errors while connecting, unwrapped by SQLAlchemy; a timeout is an
    # OSError.
    except (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        cause = refusal_cause(exc)
        if cause is None:
            return Readiness(False, "unreachable", None)
        # Only the cause: the driver's message names the database or role.
        logger.error("database refused the connection: %s", cause)
        return Readiness(False, "refused", None)
    if revision == head_revision() or (revision is not None and not is_known(revision)):
        return Readiness(True, "ok", revision)
    return Readiness(False, "not_migrated", revision)
