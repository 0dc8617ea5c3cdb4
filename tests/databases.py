"""Per-test databases: each test gets a fresh, migrated database of its own.

SQLite: a copy of a migrated template file. PostgreSQL (when REFERRAL_TEST_DATABASE_URL is set,
as CI always does): CREATE DATABASE … TEMPLATE from a migrated template, dropped afterwards.
Real databases with real commits, so concurrency tests mean something; no shared state.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from service.core.migrate import upgrade

PG_URL_VARIABLE = "REFERRAL_TEST_DATABASE_URL"
_counter = itertools.count()


def postgres_url() -> str | None:
    url = os.environ.get(PG_URL_VARIABLE)
    if not url and os.environ.get("CI"):
        raise RuntimeError(f"CI must set {PG_URL_VARIABLE}: the suite runs on PostgreSQL too")
    return url or None


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if postgres_url() else ["sqlite"]


async def _migrate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


class SqliteDatabases:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.db"
        asyncio.run(_migrate(f"sqlite+aiosqlite:///{self.template}"))

    def new(self) -> str:
        path = self.directory / f"test-{next(_counter)}.db"
        shutil.copyfile(self.template, path)
        return f"sqlite+aiosqlite:///{path}"

    def drop(self, url: str) -> None:
        database = make_url(url).database
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)


class PostgresDatabases:
    def __init__(self, url: str) -> None:
        self.base = make_url(url)
        self.prefix = f"referral_test_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        asyncio.run(self._create_template())

    def _dsn(self, database: str) -> str:
        return self.base.set(drivername="postgresql", database=database).render_as_string(
            hide_password=False
        )

    def _url(self, database: str) -> str:
        return self.base.set(drivername="postgresql+asyncpg", database=database).render_as_string(
            hide_password=False
        )

    async def _admin(self, *statements: str) -> None:
        connection = await asyncpg.connect(self._dsn(self.base.database or "postgres"))
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def _create_template(self) -> None:
        await self._admin(
            f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)',
            f'CREATE DATABASE "{self.template}"',
        )
        await _migrate(self._url(self.template))

    async def new(self) -> str:
        name = f"{self.prefix}_{next(_counter)}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return self._url(name)

    async def new_empty(self) -> str:
        """A database with no schema at all, for tests of migrating itself."""
        name = f"{self.prefix}_{next(_counter)}"
        await self._admin(f'CREATE DATABASE "{name}"')
        return self._url(name)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'))
