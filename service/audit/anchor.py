"""Logs the audit head periodically, so that a cut-off tail can be detected against the logs."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.audit import chain

logger = logging.getLogger("service.audit")


async def log_head_forever(sessions: async_sessionmaker[AsyncSession], every_seconds: int) -> None:
    """Every `every_seconds`, log the head hash and each chain's head (ids and hashes only)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            async with sessions() as session:
                heads = await chain.read_heads(session)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            logger.warning("audit head unavailable", extra={"error": type(exc).__name__})
            continue
        logger.info(
            "audit head",
            extra={"head_hash": chain.head_digest(heads), "heads": [h.to_dict() for h in heads]},
        )
