"""The database engine and the one place sessions are made."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.core.database_url import root_cert_context
from service.core.settings import DatabaseSslMode, Settings


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(settings: Settings, *, for_requests: bool = False) -> AsyncEngine:
    """Make the async engine: asyncpg on PostgreSQL, aiosqlite on SQLite.

    `for_requests` (the API's engine) sets PostgreSQL's statement_timeout on every connection,
    so a runaway request query is cancelled; CLI commands (migrate, audit verify over a long
    chain) leave it off and are not cut short."""
    url = settings.database_url
    # hide_parameters keeps personal data out of every SQLAlchemy error message.
    common: dict[str, Any] = {"hide_parameters": True}
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **common)
        _serialise_sqlite_writers(engine)
        return engine
    # asyncpg's command_timeout cancels from the client side too: for requests only, as a
    # backstop behind statement_timeout; a CLI command's long statement must run to its end.
    connect_args: dict[str, Any] = {"timeout": 5, "command_timeout": 30 if for_requests else None}
    if for_requests and settings.db_statement_timeout_ms:
        connect_args["server_settings"] = {
            "statement_timeout": str(settings.db_statement_timeout_ms)
        }
    if settings.database_ssl_root_cert is not None:
        connect_args["ssl"] = root_cert_context(
            settings.database_ssl_root_cert,
            check_hostname=settings.database_ssl_mode is DatabaseSslMode.verify_full,
        )
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args=connect_args,
        **common,
    )


# SQLSTATEs with which PostgreSQL refuses a connection because of how we are configured, not
# because it is busy: the database named in the URL does not exist, the role does not exist or
# may not log in, the password is wrong. Named in logs so that a deployer sees what to fix.
_REFUSALS = {
    "3D000": "database does not exist",
    "28000": "authentication failed (role does not exist or may not connect)",
    "28P01": "authentication failed (wrong password)",
}


def refusal_cause(error: BaseException) -> str | None:
    """Why the server refused us, if `error` (or the driver error it wraps) is a refusal."""
    for candidate in (error, getattr(error, "orig", None), error.__cause__):
        if isinstance(candidate, ssl.SSLCertVerificationError):
            return "TLS certificate verification failed (check REFERRAL_DATABASE_SSL_ROOT_CERT)"
        sqlstate = getattr(candidate, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate in _REFUSALS:
            return _REFUSALS[sqlstate]
    return None


# SQLSTATE classes that mean "not now" rather than "wrong": connection exceptions (08),
# transaction rollbacks such as deadlocks and serialisation failures (40), insufficient
# resources such as too many connections (53), and operator intervention: shutting down,
# starting up, query cancelled (57).
_TRY_AGAIN_CLASSES = ("08", "40", "53", "57")


def _try_again(error: BaseException | None) -> bool:
    # A refused connection (wrong database name, role or password) will not pass by itself,
    # but for the client it is the same: this service cannot serve now.
    sqlstate = getattr(error, "sqlstate", None) or ""
    in_class = isinstance(sqlstate, str) and sqlstate[:2] in _TRY_AGAIN_CLASSES
    return in_class or (error is not None and refusal_cause(error) is not None)


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` means that the database cannot serve now (unreachable, out of
    connections, shutting down, a transaction rolled back under contention, a commit whose
    outcome is unknown) rather than that the request or the code is wrong: the API answers the
    first 503 with Retry-After and the second 500."""
    if isinstance(error, DBAPIError):
        return (
            error.connection_invalidated
            or isinstance(error, OperationalError | InterfaceError)
            or _try_again(error.orig)
        )
    # Raised unwrapped: the pool's wait, the socket, and asyncpg while it connects.
    if isinstance(error, PoolTimeout | OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    return _try_again(error)


def _serialise_sqlite_writers(engine: AsyncEngine) -> None:
    # Every request writes (at least an audit event), so each transaction takes SQLite's
    # write lock up front with BEGIN IMMEDIATE. A deferred transaction that reads the audit
    # head and then writes can fail at once with SQLITE_BUSY instead of waiting its turn.
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: responses are rendered after commit from already-loaded rows.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
