"""Every SQL statement of the referrals domain: referrals and their idempotency keys.

Statements are built once at import and reused: SQLAlchemy caches compiled forms of Core
constructs, and rebuilding a dialect-specific statement per request cost more than the rest of
the request. Column lists and types come from the table models, so they cannot drift from them.

On PostgreSQL intake takes five round trips (BEGIN; the key's lock and lookup; one statement
that inserts the referral and the key and locks an audit chain's head; the audit event;
COMMIT): every round trip costs a system call each way, which is most of what intake costs.
SQLite, the single-user development store, runs the same steps as separate statements.

PostgreSQL's hot-path statements (intake's, and the status read's, which finds the referral and
takes its audit head in one trip) are text run on asyncpg in the session's transaction
(service/core/pg_raw.py): through SQLAlchemy Core they cost as much CPU again as asyncpg itself.
SQLite keeps the Core statements; tests/service/referrals/test_pg_hot_path.py runs both on
PostgreSQL and checks that they store and read the very same rows.

Under load PostgreSQL commits concurrent intakes together (group commit,
service/referrals/group_intake.py): the batch statements at the end of this module do the same
work for many intakes in one round trip each, one array per column, and the same test file
checks them against one intake's statements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    and_,
    bindparam,
    case,
    delete,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import chain
from service.core import pg_raw
from service.core.canonical import as_utc
from service.models import IDEMPOTENCY_KEYS, REFERRAL_MOVES, REFERRALS
from service.referrals.payloads import CURRENT_PAYLOAD_VERSION, upcast
from service.referrals.record import (
    COLUMNS,
    ReferralRecord,
    column_values,
    record_from_row,
    with_changes,
)

_REFERRALS = REFERRALS
_MOVES = REFERRAL_MOVES
_KEYS = IDEMPOTENCY_KEYS
_INSERT_MOVE = insert(_MOVES)

# --- Referrals ---------------------------------------------------------------------------

_SELECT_REFERRAL = select(_REFERRALS).where(_REFERRALS.c.id == bindparam("referral_id"))
_TYPED = [bindparam(c.name, type_=c.type) for c in _REFERRALS.columns]
_INSERT_SQL = (
    f"INSERT INTO referrals ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in COLUMNS)}) "
    "ON CONFLICT (reference) DO NOTHING RETURNING id"
)
# Text: SQLAlchemy cannot cache a dialect INSERT … ON CONFLICT.
_INSERT_REFERRAL = text(_INSERT_SQL).bindparams(*_TYPED)
# PostgreSQL (on asyncpg, see service/core/pg_raw.py): the referral, its idempotency key (when
# there is one) and an audit head, together. A clash of random references inserts nothing
# (made = 0): draw again. A key that another instance committed between our lookup and now
# inserts no key (keyed = 0): that request was in flight when ours began, so ours is refused like
# any other in-flight duplicate. Values selected rather than inserted are cast: PostgreSQL
# infers a parameter's type from the column it is inserted into, not through a SELECT.
_PG_STORE = pg_raw.Statement.of(
    f"WITH created AS ({_INSERT_SQL}), "
    "keyed AS (INSERT INTO idempotency_keys "
    "(org, key, request_sha256, referral_id, created_at, response) "
    "SELECT :key_org::varchar, :key_key::varchar, :key_sha256::varchar, id, "
    ":key_created_at::timestamptz, :key_response::json "
    "FROM created WHERE :with_key::boolean "
    "ON CONFLICT (org, key) DO NOTHING RETURNING referral_id), "
    "moved AS (INSERT INTO referral_moves "
    "(referral_id, version, action, from_status, to_status, at, by_org) "
    "SELECT id, :version::integer, 'intake', NULL, :status::varchar, "
    ":received_at::timestamptz, :org::varchar FROM created), "
    f"head AS ({chain.PG_FREE_HEAD_SQL}) "
    "SELECT (SELECT count(*) FROM created) AS made, (SELECT count(*) FROM keyed) AS keyed, "
    "head.chain, head.chain_seq, head.hash, head.seq "
    "FROM (SELECT 1) AS one LEFT JOIN head ON true"
)
# The JSON columns, which asyncpg takes as JSON text. SQLAlchemy's JSON type (none_as_null
# False) stores Python None as JSON 'null', not SQL NULL: so does json.dumps(None).
_JSON_COLUMNS = frozenset(c.name for c in _REFERRALS.columns if isinstance(c.type, JSON))


def _pg_column_values(record: ReferralRecord) -> dict[str, Any]:
    values = column_values(record)
    for name in _JSON_COLUMNS:
        values[name] = json.dumps(values[name])
    return values


def _record(row: Any) -> ReferralRecord:
    record = record_from_row(row)
    if record.payload_version == CURRENT_PAYLOAD_VERSION:
        return record
    return with_changes(
        record,
        payload=upcast(record.payload, record.payload_version),
        payload_version=CURRENT_PAYLOAD_VERSION,
    )


async def find(db: AsyncConnection, referral_id: str) -> ReferralRecord | None:
    """The referral with its payload in the current shape, or None."""
    row = (await db.execute(_SELECT_REFERRAL, {"referral_id": referral_id})).first()
    return None if row is None else _record(row)


# PostgreSQL, on asyncpg: what a status read shows of a referral. Every column but the
# payload: personal data that a status never shows, and the largest value to decode.
_STATUS_COLUMNS = tuple(name for name in COLUMNS if name != "payload")
_PG_STATUS = pg_raw.Statement.of(
    f"SELECT {', '.join(_STATUS_COLUMNS)} FROM referrals WHERE id = :referral_id"
)


async def find_status(db: AsyncConnection, referral_id: str) -> ReferralRecord | None:
    """The referral as a status read needs it, or None: on PostgreSQL without its payload (an
    empty dict in its place), elsewhere whole."""
    if db.dialect.name != "postgresql":
        return await find(db, referral_id)
    row = await pg_raw.fetchrow(db, _PG_STATUS, {"referral_id": referral_id})
    if row is None:
        return None
    return ReferralRecord(**{name: row[name] for name in _STATUS_COLUMNS}, payload={})


@dataclass(frozen=True, slots=True)
class ListFilters:
    status: str | None = None
    outcome: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """What a list shows of a referral: no payload, no decision. Lists read only these
    columns, so a page never decodes (or re-validates) the documents it does not show."""

    id: str
    reference: str
    org: str
    status: str
    version: int
    outcome: str
    priority: str
    provisional: bool
    safeguarding_alert: bool
    received_at: datetime
    updated_at: datetime


# Named after the table's columns: a field without its column fails at import.
_SUMMARY_COLUMNS = tuple(_REFERRALS.c[f.name] for f in fields(SummaryRow))


def _summary(row: Any) -> SummaryRow:
    return SummaryRow(*row)


@lru_cache(maxsize=256)
def _list_statement(
    order: str,
    *,
    org: bool,
    status: bool,
    outcome: bool,
    received_from: bool,
    received_to: bool,
    positioned: bool,
    limit: int,
) -> Any:
    """The list query for one shape of request, built once: building and hashing a select
    per request cost more CPU than running it. Values are bound at execution."""
    t = _REFERRALS.c
    query = select(*_SUMMARY_COLUMNS)
    if org:
        query = query.where(t.org == bindparam("org"))
    if status:
        query = query.where(t.status == bindparam("status"))
    if outcome:
        query = query.where(t.outcome == bindparam("outcome"))
    if received_from:
        query = query.where(t.received_at >= bindparam("received_from", type_=t.received_at.type))
    if received_to:
        query = query.where(t.received_at < bindparam("received_to", type_=t.received_at.type))
    at = bindparam("at_received", type_=t.received_at.type)
    at_id = bindparam("at_id", type_=t.id.type)
    if order == "received":
        if positioned:
            # A row-value comparison, not `a < x OR (a = x AND b < y)`: both databases seek
            # the (org, received_at, id) index to the cursor with it, so a page deep in a long
            # list costs what the first page costs (PostgreSQL filters the OR form after the
            # index).
            query = query.where(tuple_(t.received_at, t.id) < tuple_(at, at_id))
        return query.order_by(t.received_at.desc(), t.id.desc()).limit(limit)
    rank = _worklist_rank()
    if positioned:
        query = query.where(
            tuple_(rank, t.received_at, t.id)
            > tuple_(bindparam("at_rank", type_=Integer()), at, at_id)
        )
    return query.order_by(rank, t.received_at, t.id).limit(limit)


async def _page(
    db: AsyncConnection,
    order: str,
    *,
    org: str | None,
    filters: ListFilters,
    position: tuple[Any, ...] | None,
    limit: int,
) -> list[SummaryRow]:
    statement = _list_statement(
        order,
        org=org is not None,
        status=bool(filters.status),
        outcome=bool(filters.outcome),
        received_from=bool(filters.received_from),
        received_to=bool(filters.received_to),
        positioned=position is not None,
        limit=limit,
    )
    values: dict[str, Any] = {
        "org": org,
        "status": filters.status,
        "outcome": filters.outcome,
        "received_from": as_utc(filters.received_from) if filters.received_from else None,
        "received_to": as_utc(filters.received_to) if filters.received_to else None,
    }
    if position is not None:
        *rank, values["at_received"], values["at_id"] = position
        if rank:
            values["at_rank"] = rank[0]
    return [_summary(r) for r in await db.execute(statement, values)]


async def newest_first(
    db: AsyncConnection,
    *,
    org: str | None,
    filters: ListFilters,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[SummaryRow]:
    """Up to `limit` referrals (of `org`, or of everyone), newest first, keyset-paged on
    (received_at, id) strictly before `before`."""
    return await _page(db, "received", org=org, filters=filters, position=before, limit=limit)


def _worklist_rank() -> Any:
    """0: safeguarding alert and urgent, 1: alert, 2: urgent, 3: the rest (lifecycle.md)."""
    t = _REFERRALS.c
    return case((t.safeguarding_alert, 0), else_=2) + case((t.priority == "urgent", 0), else_=1)


def worklist_rank(record: ReferralRecord | SummaryRow) -> int:
    return (0 if record.safeguarding_alert else 2) + (0 if record.priority == "urgent" else 1)


async def worklist_order(
    db: AsyncConnection,
    *,
    org: str | None,
    filters: ListFilters,
    after: tuple[int, datetime, str] | None,
    limit: int,
) -> list[SummaryRow]:
    """The team's worklist order: safeguarding alerts first, then urgent, then oldest first;
    keyset-paged on (rank, received_at, id) strictly after `after`."""
    return await _page(db, "triage", org=org, filters=filters, position=after, limit=limit)


async def insert_referral(db: AsyncConnection, record: ReferralRecord) -> bool:
    """Insert the referral and the first line of its history; False (nothing inserted) when
    its reference is already taken."""
    if (await db.execute(_INSERT_REFERRAL, column_values(record))).first() is None:
        return False
    await db.execute(
        _INSERT_MOVE,
        {
            "referral_id": record.id,
            "version": record.version,
            "action": "intake",
            "from_status": None,
            "to_status": record.status,
            "at": record.received_at,
            "by_org": record.org,
            "reason_code": None,
        },
    )
    return True


@dataclass(frozen=True, slots=True)
class KeyRow:
    org: str
    key: str
    request_sha256: str
    referral_id: str
    created_at: datetime
    response: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Stored:
    made: bool  # False: the reference was taken, draw another
    keyed: bool  # False: another request committed this key first
    head: chain.TakenHead | None  # None: every chain's head was busy


async def store_with_key_and_head(
    db: AsyncConnection, record: ReferralRecord, key: KeyRow | None
) -> Stored:
    """PostgreSQL: insert the referral and its key and take a free audit head, in one trip."""
    params = {
        **_pg_column_values(record),
        "key_org": key.org if key else None,
        "key_key": key.key if key else None,
        "key_sha256": key.request_sha256 if key else None,
        "key_created_at": key.created_at if key else record.received_at,
        # JSON(none_as_null=True) in SQLAlchemy's terms: no response is SQL NULL.
        "key_response": None if key is None or key.response is None else json.dumps(key.response),
        "with_key": key is not None,
    }
    row = await pg_raw.fetchrow(db, _PG_STORE, params)
    head = (
        None
        if row["chain"] is None
        else chain.TakenHead(row["chain"], row["chain_seq"], row["hash"], row["seq"])
    )
    return Stored(made=bool(row["made"]), keyed=bool(row["keyed"]), head=head)


# --- Idempotency keys ----------------------------------------------------------------------

# PostgreSQL, on asyncpg: the key's transaction lock and its lookup in one round trip.
_PG_LOCK_AND_FIND_KEY = pg_raw.Statement.of(
    "SELECT pg_try_advisory_xact_lock(:lock_id) AS locked, k.request_sha256, k.referral_id, "
    "k.created_at, k.response FROM (SELECT 1) AS one LEFT JOIN idempotency_keys AS k "
    "ON k.org = :org AND k.key = :key"
)
_THIS_KEY = (_KEYS.c.org == bindparam("org")) & (_KEYS.c.key == bindparam("key"))
_FIND_KEY = select(
    _KEYS.c.request_sha256, _KEYS.c.referral_id, _KEYS.c.created_at, _KEYS.c.response
).where(_THIS_KEY)
_FORGET_KEY = delete(_KEYS).where(_THIS_KEY, _KEYS.c.created_at == bindparam("seen"))
_INSERT_KEY = insert(_KEYS)


@dataclass(frozen=True, slots=True)
class FoundKey:
    request_sha256: str
    referral_id: str
    created_at: datetime  # as read: naive on SQLite (always written as UTC)
    response: dict[str, Any] | None


def _found(row: Any) -> FoundKey | None:
    # By name, not attribute: SQLAlchemy Rows and asyncpg Records both index by column name.
    if row is None or row["request_sha256"] is None:
        return None
    return FoundKey(row["request_sha256"], row["referral_id"], row["created_at"], row["response"])


async def lock_and_find_key(
    db: AsyncConnection, *, org: str, key: str, lock_id: int
) -> tuple[bool, FoundKey | None]:
    """PostgreSQL: try the key's transaction lock and look the key up, in one round trip."""
    row = await pg_raw.fetchrow(
        db, _PG_LOCK_AND_FIND_KEY, {"org": org, "key": key, "lock_id": lock_id}
    )
    return bool(row["locked"]), _found(row)


async def find_key(db: AsyncConnection, *, org: str, key: str) -> FoundKey | None:
    row = (await db.execute(_FIND_KEY, {"org": org, "key": key})).first()
    return _found(None if row is None else row._mapping)


async def forget_key(db: AsyncConnection, *, org: str, key: str, seen: datetime) -> bool:
    """Delete the key only if it is still the very row seen (created at `seen`)."""
    # The stored value is compared as read: SQLite hands back naive times, so pass it as is.
    result = await db.execute(_FORGET_KEY, {"org": org, "key": key, "seen": seen})
    return result.rowcount == 1


async def insert_key(db: AsyncConnection, key: KeyRow) -> None:
    await db.execute(
        _INSERT_KEY,
        {
            "org": key.org,
            "key": key.key,
            "request_sha256": key.request_sha256,
            "referral_id": key.referral_id,
            "created_at": key.created_at,
            "response": key.response,
        },
    )


# --- Moves and history ---------------------------------------------------------------------


async def apply_move(
    db: AsyncConnection,
    referral: ReferralRecord,
    *,
    changes: dict[str, Any],
    expected_version: int,
    now: datetime,
) -> ReferralRecord | None:
    """Apply a move if the referral is still at `expected_version`; None if it has moved.

    On PostgreSQL a concurrent UPDATE of the same row waits for the first to commit and then
    re-checks the WHERE clause against the committed row, so exactly one of two wins.
    """
    t = _REFERRALS.c
    statement = (
        update(_REFERRALS)
        .where(t.id == referral.id, t.version == expected_version)
        .values(**changes, version=t.version + 1, updated_at=now)
        .returning(*_REFERRALS.columns)
    )
    row = (await db.execute(statement)).first()
    return None if row is None else _record(row)


async def insert_move(
    db: AsyncConnection,
    *,
    referral_id: str,
    version: int,
    action: str,
    from_status: str | None,
    to_status: str,
    at: datetime,
    by_org: str,
    reason_code: str | None,
) -> None:
    await db.execute(
        _INSERT_MOVE,
        {
            "referral_id": referral_id,
            "version": version,
            "action": action,
            "from_status": from_status,
            "to_status": to_status,
            "at": at,
            "by_org": by_org,
            "reason_code": reason_code,
        },
    )


@dataclass(frozen=True, slots=True)
class HistoryLine:
    status: str
    action: str
    at: datetime
    by_org: str
    reason_code: str | None
    version: int


_HISTORY = (
    select(
        _MOVES.c.to_status,
        _MOVES.c.action,
        _MOVES.c.at,
        _MOVES.c.by_org,
        _MOVES.c.reason_code,
        _MOVES.c.version,
    )
    .where(_MOVES.c.referral_id == bindparam("referral_id"))
    .order_by(_MOVES.c.version)
)


async def history(db: AsyncConnection, referral_id: str) -> list[HistoryLine]:
    rows = await db.execute(_HISTORY, {"referral_id": referral_id})
    return [
        HistoryLine(r.to_status, r.action, as_utc(r.at), r.by_org, r.reason_code, r.version)
        for r in rows
    ]


# --- Possible duplicates -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DuplicateRow:
    """What a possible duplicate shows: ids, status and time; never the payload."""

    id: str
    reference: str
    status: str
    received_at: datetime
    match: str  # "nhs_number" or "name_and_date"


_DUPLICATE_COLUMNS = (
    _REFERRALS.c.id,
    _REFERRALS.c.reference,
    _REFERRALS.c.status,
    _REFERRALS.c.received_at,
    _REFERRALS.c.match_nhs_number,
)


@lru_cache(maxsize=32)
def _duplicates_statement(
    *, by_nhs: bool, by_name: bool, with_org: bool, statuses: tuple[str, ...], limit: int
) -> Any:
    """The possible-duplicates query for one shape, built once (it runs on every intake)."""
    t = _REFERRALS.c
    matches = []
    if by_nhs:
        matches.append(t.match_nhs_number == bindparam("nhs_number"))
    if by_name:
        same_name = t.match_name_key == bindparam("name_key")
        matches.append(same_name if not by_nhs else and_(same_name, t.match_nhs_number.is_(None)))
    # One bound value per status, not an "expanding" IN that is rewritten on every execution.
    open_now = [
        bindparam(f"open_{i}", value=s, type_=t.status.type) for i, s in enumerate(statuses)
    ]
    query = select(*_DUPLICATE_COLUMNS).where(
        or_(*matches), t.id != bindparam("referral_id"), t.status.in_(open_now)
    )
    if with_org:
        query = query.where(t.org == bindparam("org"))
    return query.order_by(t.received_at.desc(), t.id.desc()).limit(limit)


@lru_cache(maxsize=32)
def _pg_duplicates_statement(
    *, by_nhs: bool, by_name: bool, with_org: bool, statuses: tuple[str, ...], limit: int
) -> pg_raw.Statement:
    """The same query as `_duplicates_statement`, as text for asyncpg (PostgreSQL)."""
    matches = []
    if by_nhs:
        matches.append("match_nhs_number = :nhs_number")
    if by_name:
        same_name = "match_name_key = :name_key"
        matches.append(same_name if not by_nhs else f"{same_name} AND match_nhs_number IS NULL")
    open_now = ", ".join(f":open_{i}" for i in range(len(statuses)))
    return pg_raw.Statement.of(
        "SELECT id, reference, status, received_at, match_nhs_number FROM referrals "
        f"WHERE ({' OR '.join(f'({m})' for m in matches)}) AND id != :referral_id "
        f"AND status IN ({open_now})"
        + (" AND org = :org" if with_org else "")
        + f" ORDER BY received_at DESC, id DESC LIMIT {int(limit)}"
    )


async def possible_duplicates(
    db: AsyncConnection,
    *,
    referral_id: str,
    nhs_number: str | None,
    name_key: str | None,
    open_statuses: frozenset[str],
    org: str | None,
    limit: int = 20,
) -> list[DuplicateRow]:
    """Open referrals (of `org`, or of everyone) that may be of the same infant, with how they
    matched: "nhs_number", or "name_and_date" when either referral has no NHS number. Only the
    columns a duplicate shows are read: the same infant referred many times must not make each
    intake decode every earlier payload."""
    if nhs_number is None and name_key is None:
        return []
    statuses = tuple(sorted(open_statuses))
    by_nhs, by_name, with_org = nhs_number is not None, name_key is not None, org is not None
    values = {"nhs_number": nhs_number, "name_key": name_key, "referral_id": referral_id}
    if org is not None:
        values["org"] = org
    rows: Any
    if db.dialect.name == "postgresql":
        values.update({f"open_{i}": status for i, status in enumerate(statuses)})
        statement = _pg_duplicates_statement(
            by_nhs=by_nhs, by_name=by_name, with_org=with_org, statuses=statuses, limit=limit
        )
        rows = await pg_raw.fetch(db, statement, values)
    else:
        query = _duplicates_statement(
            by_nhs=by_nhs, by_name=by_name, with_org=with_org, statuses=statuses, limit=limit
        )
        rows = [r._mapping for r in await db.execute(query, values)]
    return [_duplicate(row, nhs_number) for row in rows]


def _duplicate(row: Any, nhs_number: str | None, *, prefix: str = "") -> DuplicateRow:
    """A possible duplicate, matched on the NHS number if it has the one asked about."""
    by_nhs = nhs_number is not None and row[f"{prefix}match_nhs_number"] == nhs_number
    return DuplicateRow(
        row[f"{prefix}id"],
        row[f"{prefix}reference"],
        row[f"{prefix}status"],
        as_utc(row[f"{prefix}received_at"]),
        "nhs_number" if by_nhs else "name_and_date",
    )


# --- Many intakes at once (group commit, PostgreSQL) ---------------------------------------
# The same work as intake's statements above, for a whole batch in two round trips: one that
# reads (the keys' locks and lookups, the possible duplicates, an audit head), one that writes
# (referrals, keys, first moves, audit events, the head's move). Every value arrives as one array
# per column (unnest), so one prepared statement serves a batch of any size.


@lru_cache(maxsize=8)
def _pg_claim_many_statement(statuses: tuple[str, ...], limit: int) -> pg_raw.Statement:
    """One row per possible duplicate of each intake (one with NULL `dup_id` if it has none),
    with its key's lock and lookup and, on the first intake's rows, the audit head taken.

    The shapes of `_pg_duplicates_statement` fold into one with NULL-able values: no key, no lock
    (and no lookup); no NHS number, no match on it; no `dup_org`, every organisation's."""
    open_now = ", ".join(f":open_{i}" for i in range(len(statuses)))
    return pg_raw.Statement.of(
        # MATERIALIZED: each lock is tried once per intake, not once per row of the join.
        "WITH asked AS MATERIALIZED (SELECT u.*, CASE WHEN u.key IS NULL THEN true "
        "ELSE pg_try_advisory_xact_lock(u.lock_id) END AS locked "
        "FROM unnest(:n::integer[], :org::varchar[], :key::varchar[], :lock_id::bigint[], "
        ":referral_id::varchar[], :nhs_number::varchar[], :name_key::varchar[], "
        ":dup_org::varchar[]) "
        "AS u(n, org, key, lock_id, referral_id, nhs_number, name_key, dup_org)), "
        f"head AS MATERIALIZED ({chain.PG_FREE_HEAD_FOR_MANY_SQL}) "
        "SELECT a.n, a.locked, k.request_sha256, k.referral_id, k.created_at, k.response, "
        "d.id AS dup_id, d.reference AS dup_reference, d.status AS dup_status, "
        "d.received_at AS dup_received_at, d.match_nhs_number AS dup_match_nhs_number, "
        "head.chain, head.chain_seq, head.hash, head.seqs "
        "FROM asked AS a "
        "LEFT JOIN idempotency_keys AS k ON k.org = a.org AND k.key = a.key "
        "LEFT JOIN LATERAL (SELECT r.id, r.reference, r.status, r.received_at, "
        "r.match_nhs_number FROM referrals AS r "
        "WHERE (r.match_nhs_number = a.nhs_number OR (r.match_name_key = a.name_key "
        "AND (a.nhs_number IS NULL OR r.match_nhs_number IS NULL))) "
        f"AND r.id != a.referral_id AND r.status IN ({open_now}) "
        "AND (a.dup_org IS NULL OR r.org = a.dup_org) "
        f"ORDER BY r.received_at DESC, r.id DESC LIMIT {int(limit)}) AS d ON true "
        # The head on the first intake's rows only: decoded once, not once per row.
        "LEFT JOIN head ON a.n = 0 "
        "ORDER BY a.n, d.received_at DESC, d.id DESC"
    )


@dataclass(frozen=True, slots=True)
class IntakeLookup:
    """What one intake of a batch looks up: its key (if any) and its possible duplicates."""

    org: str
    key: str | None
    lock_id: int | None
    referral_id: str
    nhs_number: str | None
    name_key: str | None
    duplicates_of: str | None  # whose referrals: an organisation, or None for every one


@dataclass(frozen=True, slots=True)
class IntakeClaim:
    locked: bool  # the key's lock (True without a key)
    found: FoundKey | None
    duplicates: list[DuplicateRow]


@dataclass(frozen=True, slots=True)
class Claimed:
    intakes: list[IntakeClaim]  # in the order of the lookups
    head: chain.HeadForMany | None  # None: every audit head was busy (see chain.wait_for_head)


async def claim_many(
    db: AsyncConnection,
    lookups: list[IntakeLookup],
    *,
    open_statuses: frozenset[str],
    limit: int = 20,
) -> Claimed:
    """PostgreSQL, in one round trip: for each of `lookups`, what `lock_and_find_key` and
    `possible_duplicates` give, and a free audit head with a sequence number for each lookup.
    The caller must not pass one key twice: a transaction takes its own lock again."""
    statuses = tuple(sorted(open_statuses))
    values: dict[str, Any] = {
        "n": list(range(len(lookups))),
        "org": [k.org for k in lookups],
        "key": [k.key for k in lookups],
        "lock_id": [k.lock_id for k in lookups],
        "referral_id": [k.referral_id for k in lookups],
        "nhs_number": [k.nhs_number for k in lookups],
        "name_key": [k.name_key for k in lookups],
        "dup_org": [k.duplicates_of for k in lookups],
        "events": len(lookups),
    }
    values.update({f"open_{i}": status for i, status in enumerate(statuses)})
    rows = await pg_raw.fetch(db, _pg_claim_many_statement(statuses, limit), values)
    claims: list[IntakeClaim] = []
    for row in rows:
        n = row["n"]
        if n == len(claims):  # an intake's first row carries its key
            claims.append(IntakeClaim(bool(row["locked"]), _found(row), []))
        if row["dup_id"] is not None:
            claims[n].duplicates.append(_duplicate(row, lookups[n].nhs_number, prefix="dup_"))
    head = chain.HeadForMany.of(rows[0]) if rows and rows[0]["chain"] is not None else None
    return Claimed(claims, head)


_KEY_COLUMNS = ("org", "key", "request_sha256", "referral_id", "created_at", "response")
_MOVE_COLUMNS = ("referral_id", "version", "action", "from_status", "to_status", "at", "by_org")
# Plain INSERTs, no ON CONFLICT: a reference drawn twice or a key that another instance has
# committed since the lookup fails the whole statement, and the batch is then retried one
# intake at a time (service/referrals/group_intake.py), where each case has its own answer.
# The audit events go in the same statement, with their head's move (PostgreSQL runs each
# data-modifying CTE exactly once, whether or not the outer statement reads it).
_PG_STORE_MANY = pg_raw.Statement.of(
    f"WITH created AS (INSERT INTO referrals ({', '.join(COLUMNS)}) "
    f"{pg_raw.unnest_rows(_REFERRALS, COLUMNS)}), "
    f"keyed AS (INSERT INTO idempotency_keys ({', '.join(_KEY_COLUMNS)}) "
    f"{pg_raw.unnest_rows(_KEYS, _KEY_COLUMNS, prefix='key_')}), "
    f"moved AS (INSERT INTO referral_moves ({', '.join(_MOVE_COLUMNS)}) "
    f"{pg_raw.unnest_rows(_MOVES, _MOVE_COLUMNS, prefix='move_')}), "
    f"appended AS ({chain.PG_APPEND_EVENTS_SQL}) "
    f"{chain.PG_MOVE_HEAD_SQL}"
)


async def store_many(
    db: AsyncConnection, records: list[ReferralRecord], keys: list[KeyRow], events: chain.Chained
) -> None:
    """PostgreSQL: insert the referrals, their first moves, `keys` and the audit `events` (from
    `chain.chain_events`, on the head this transaction holds), in one round trip; the statement
    fails as a whole if any reference or key is taken (IntegrityError)."""
    rows = [_pg_column_values(record) for record in records]
    values: dict[str, Any] = {name: [row[name] for row in rows] for name in COLUMNS}
    values.update(
        {
            "key_org": [k.org for k in keys],
            "key_key": [k.key for k in keys],
            "key_request_sha256": [k.request_sha256 for k in keys],
            "key_referral_id": [k.referral_id for k in keys],
            "key_created_at": [k.created_at for k in keys],
            "key_response": [None if k.response is None else json.dumps(k.response) for k in keys],
            "move_referral_id": [r.id for r in records],
            "move_version": [r.version for r in records],
            "move_action": ["intake"] * len(records),
            "move_from_status": [None] * len(records),
            "move_to_status": [r.status for r in records],
            "move_at": [r.received_at for r in records],
            "move_by_org": [r.org for r in records],
            **events.values,
        }
    )
    await pg_raw.fetch(db, _PG_STORE_MANY, values)
    chain.appended(events)
