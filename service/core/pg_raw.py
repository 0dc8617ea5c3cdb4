"""PostgreSQL's hot statements, run on the session's own asyncpg connection in its transaction.

Why: per intake, SQLAlchemy Core spent as much CPU as asyncpg itself (coercing, caching and
compiling parameters, a greenlet switch per statement): the same five statements cost 888 µs
through it and 371 µs on asyncpg (issue #15). asyncpg prepares each statement once per
connection and keeps it in its own cache, so a statement here is text with `$n` parameters.

The connection is the very one the session checked out of the pool, so the unit of work still
owns the transaction: what runs here commits or rolls back with everything else. One catch:
SQLAlchemy's asyncpg adapter sends BEGIN lazily, at its own first statement, and commits only
a transaction it began. A statement sent here first would run outside any transaction and
never be rolled back, so `driver()` makes the adapter begin first; and a failure is handed to
SQLAlchemy's own error handling, so it surfaces as it always did (private API of SQLAlchemy
2.0: tests/service/core/test_pg_raw.py and tests/ops/test_database_outage.py fail if it
changes).

Statements are written with `:name` placeholders, readable beside their SQLAlchemy twins, and
turned into `$n` once at import. Values go to asyncpg as they are: JSON columns take JSON text
(the codec SQLAlchemy registers on each connection encodes `str` and decodes to Python).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import greenlet_spawn

# `:name`, but not the second colon of a `::type` cast.
_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement as asyncpg runs it: `$n` text, and the names its parameters come from."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, sql: str) -> Statement:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        return cls(_PLACEHOLDER.sub(number, sql), tuple(names))

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def unnest_rows(table: Table, columns: Sequence[str], *, prefix: str = "") -> str:
    """`SELECT * FROM unnest(:a::T[], :b::U[], …)`: many rows of `columns` from one array per
    column (named `prefix` + column), each cast to its column's type: any number of rows in one
    round trip and one prepared statement. JSON columns take arrays of JSON text."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f":{prefix}{name}::{table.c[name].type.compile(dialect=dialect)}[]" for name in columns
    )
    return f"SELECT * FROM unnest({arrays})"


async def driver(db: AsyncConnection) -> Any:
    """The asyncpg connection under `db`, inside the transaction the unit of work will end; or,
    on a connection lent with isolation_level AUTOCOMMIT (a read's, service/referrals/queries.py),
    outside any: the adapter then begins none, and each statement stands alone."""
    # The fairy of the connection the session already holds: no I/O, no greenlet switch.
    adapter: Any = db.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    if not adapter._started:
        await adapter._start_transaction()
    return adapter._connection


async def fetch(db: AsyncConnection, statement: Statement, values: Mapping[str, Any]) -> Any:
    """Every row (asyncpg Records) of `statement` run with `values`."""
    args = statement.args(values)
    try:
        connection = await driver(db)
        rows = await connection.fetch(statement.sql, *args)
    except Exception as error:
        await _raise_as_sqlalchemy_would(db, error, statement.sql, args)
        raise
    _announce(db, statement.sql, args, rows)
    return rows


async def fetchrow(db: AsyncConnection, statement: Statement, values: Mapping[str, Any]) -> Any:
    """The first row of `statement` run with `values`, or None."""
    rows = await fetch(db, statement, values)
    return rows[0] if rows else None


async def _raise_as_sqlalchemy_would(
    db: AsyncConnection, error: Exception, sql: str, args: Sequence[Any]
) -> None:
    """Raise `error` as SQLAlchemy would have, had it run the statement: as its own exception
    class (IntegrityError, OperationalError…, parameters hidden as the engine says), and with
    the pooled connection invalidated when the error means it is gone. The API maps those to
    503, and the pool must not hand a dead connection out again."""
    adapter: Any = db.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    try:
        adapter._handle_exception(error)  # the adapter's DBAPI class for an asyncpg error
    except Exception as dbapi_error:
        # SQLAlchemy's own handling, in a greenlet: invalidating closes the connection.
        await greenlet_spawn(
            db.sync_connection._handle_dbapi_exception,  # type: ignore[union-attr]
            dbapi_error,
            sql,
            tuple(args),
            None,
            None,
        )


@dataclass(frozen=True, slots=True)
class _Ran:
    """What a cursor would show of a statement that ran, for the engine's listeners."""

    description: list[tuple[Any, ...]]
    _rows: list[tuple[Any, ...]]


def _announce(db: AsyncConnection, sql: str, args: Sequence[Any], rows: Sequence[Any]) -> None:
    # Statements run here bypass SQLAlchemy's execution, so its events would not see them:
    # hand them to "after_cursor_execute" listeners (the benchmark records intake's statements
    # to replay them in pgbench; a tracer would hook there too). Free when nobody listens.
    sync = db.sync_connection
    if sync is None or not sync.dispatch.after_cursor_execute:
        return
    columns = [(name,) for name in rows[0].keys()] if rows else []
    ran = _Ran(columns, [tuple(r) for r in rows])
    sync.dispatch.after_cursor_execute(sync, ran, sql, tuple(args), None, False)
