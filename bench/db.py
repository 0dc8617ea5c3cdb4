"""The benchmark's databases: PostgreSQL when one answers on 127.0.0.1:5432, else SQLite.

On PostgreSQL each run creates its own `bench_<pid>_<random>_service`, `…_naive` and
`…_dbceiling` (E_db, pgbench) databases and drops them at the end, whatever happened.
BENCH_PG_DSN overrides the server to use (default
postgresql://postgres@127.0.0.1:5432/postgres; it must be on this machine).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_WHICH = {"service": 0, "naive": 1, "dbceiling": 2}
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def pg_dsn() -> str:
    dsn = os.environ.get("BENCH_PG_DSN", DEFAULT_PG_DSN)
    host = urlsplit(dsn).hostname or ""
    if host not in _LOCAL_HOSTS and not host.startswith("127."):
        raise SystemExit(f"BENCH_PG_DSN must point at this machine, not {host!r}")
    return dsn


async def _pg_server(dsn: str) -> tuple[str, bool] | None:
    """The server's version, and whether it offers TLS: asyncpg, psycopg and pgbench all
    prefer TLS when it is offered (even on loopback), which costs CPU on both sides of every
    round trip, so a run says which it measured."""
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version, await conn.fetchval("SHOW ssl") == "on"
    finally:
        await conn.close()


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return parts._replace(path=f"/{name}").geturl()


@dataclass
class Databases:
    kind: str  # "postgresql" or "sqlite"
    version: str
    service_url: str  # async, for the service (REFERRAL_DATABASE_URL)
    naive_url: str  # sync, for the naive peer
    _names: list[str] = field(default_factory=list)
    _admin_dsn: str = ""
    tls: bool | None = None  # PostgreSQL offers TLS, so every client here uses it
    _files: list[Path] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.version}"

    # --- lifecycle ---

    def create(self) -> None:
        if self.kind == "postgresql":
            asyncio.run(self._admin(*(f'CREATE DATABASE "{n}"' for n in self._names)))

    def drop(self) -> None:
        if self.kind == "postgresql":
            asyncio.run(
                self._admin(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in self._names))
            )
        else:
            for path in self._files:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def _admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(self._admin_dsn, timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    # --- reading back ---

    def raw_dsn(self, which: str) -> str:
        """PostgreSQL: a plain libpq/asyncpg DSN for that database."""
        return _with_database(self._admin_dsn, self._names[_WHICH[which]])

    def async_url(self, which: str) -> str:
        """PostgreSQL: the service's (SQLAlchemy asyncpg) URL for that database."""
        return self.raw_dsn(which).replace("postgresql://", "postgresql+asyncpg://", 1)

    def scalar(self, which: str, query: str) -> int:
        """One integer from the service's ("service") or the naive peer's ("naive") database."""
        return int(self.rows(which, query)[0][0])

    def rows(self, which: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Every row of a query (arguments as $1… on PostgreSQL, ? on SQLite)."""
        if self.kind == "postgresql":

            async def run() -> list[tuple[Any, ...]]:
                conn = await asyncpg.connect(self.raw_dsn(which), timeout=5)
                try:
                    return [tuple(r) for r in await conn.fetch(query, *args)]
                finally:
                    await conn.close()

            return asyncio.run(run())
        with sqlite3.connect(self._files[_WHICH[which]]) as conn:
            return [tuple(r) for r in conn.execute(query, args).fetchall()]

    def execute(self, which: str, *statements: str) -> None:
        """Run statements in one transaction (bulk loads for the scale phase)."""
        if self.kind == "postgresql":

            async def run() -> None:
                conn = await asyncpg.connect(self.raw_dsn(which), timeout=5, command_timeout=600)
                try:
                    async with conn.transaction():
                        for statement in statements:
                            await conn.execute(statement)
                finally:
                    await conn.close()

            asyncio.run(run())
            return
        with sqlite3.connect(self._files[_WHICH[which]]) as conn:
            for statement in statements:
                conn.execute(statement)

    def backend_pids(self, which: str) -> list[int]:
        """PostgreSQL backends serving that database now (their CPU is the database's share)."""
        if self.kind != "postgresql":
            return []
        name = self._names[_WHICH[which]]

        async def run() -> list[int]:
            conn = await asyncpg.connect(self._admin_dsn, timeout=5)
            try:
                rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
                return [int(r["pid"]) for r in rows]
            finally:
                await conn.close()

        return asyncio.run(run())


def choose(work_dir: Path, *, force_sqlite: bool = False) -> Databases:
    """PostgreSQL if it answers (and was not declined), else SQLite files in work_dir."""
    if not force_sqlite:
        dsn = pg_dsn()
        server = asyncio.run(_pg_server(dsn))
        if server is not None:
            version, tls = server
            stem = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
            names = [f"{stem}_service", f"{stem}_naive", f"{stem}_dbceiling"]
            service = _with_database(dsn, names[0]).replace(
                "postgresql://", "postgresql+asyncpg://", 1
            )
            naive = _with_database(dsn, names[1]).replace(
                "postgresql://", "postgresql+psycopg://", 1
            )
            return Databases("postgresql", version, service, naive, names, dsn, tls=tls)
    files = [work_dir / "service.db", work_dir / "naive.db"]
    return Databases(
        "sqlite",
        sqlite3.sqlite_version,
        f"sqlite+aiosqlite:///{files[0]}",
        f"sqlite:///{files[1]}",
        _files=files,
    )
