"""`referral-service migrate` is safe to run from several instances at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.audit import chain
from service.core.migrate import head_revision
from tests.conftest import AUDIENCE, ISSUER
from tests.ops.servers import server_env

SERVICE = str(Path(sys.executable).with_name("referral-service"))


@pytest.mark.postgres_only
async def test_three_concurrent_migrations_leave_one_schema_at_head(
    database_url: str, postgres_databases, signing_key, tmp_path: Path
) -> None:
    empty = await postgres_databases.new_empty()
    env = server_env(empty, signing_key.public_file, ISSUER, AUDIENCE)
    processes = [
        subprocess.Popen(
            [SERVICE, "migrate"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [await asyncio.to_thread(p.communicate, timeout=120) for p in processes]
    try:
        assert [p.returncode for p in processes] == [0, 0, 0], outputs
        engine = create_async_engine(empty)
        async with engine.connect() as connection:
            version = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).all()
            heads = (
                await connection.execute(text("SELECT count(*) FROM audit_chain_heads"))
            ).scalar()
        await engine.dispose()
        assert version == [(head_revision(),)]
        assert heads == chain.AUDIT_CHAINS  # seeded once, not three times
    finally:
        await postgres_databases.drop(empty)
