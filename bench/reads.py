"""The read phases' requests, and the scale phase's bulk load and deep cursors.

Reads go to E2 after its intake phases, with the same tokens: each token reads referrals of
its own organisation (`GET /v1/referrals/{id}/status`) and lists its organisation's newest
page (`GET /v1/referrals?limit=20`). Each read writes its audit event, as in production.

The scale phase loads referrals straight into the table with one SQL statement (copies of a
referral the service stored, with new ids, references, organisations and older times), then
compares the first page of the list with a page deep in it, reached by a cursor the service's
own `encode_cursor` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace

from bench import db as dbs
from bench import loadgen, payload, servers
from service.referrals.queries import encode_cursor
from service.referrals.record import COLUMNS

LIST_PATH = "/v1/referrals?limit=20"


def token_orgs(count: int) -> list[str]:
    """The organisation of each token of `payload.tokens(count=count)`, in order."""
    return [payload.ORGS[i % len(payload.ORGS)] for i in range(count)]


def status_requests(
    databases: dbs.Databases, port: int, tokens: Sequence[str], per_token: int = 8
) -> list[bytes]:
    """Status reads: each token reads referrals of its own organisation."""
    ids: dict[str, list[str]] = {}
    for referral_id, org in databases.rows(
        "service", "SELECT id, org FROM referrals ORDER BY received_at DESC LIMIT 5000"
    ):
        ids.setdefault(str(org), []).append(str(referral_id))
    requests = []
    for token, org in zip(tokens, token_orgs(len(tokens)), strict=True):
        for referral_id in ids.get(org, [])[:per_token]:
            path = f"/v1/referrals/{referral_id}/status"
            requests.append(loadgen.get_request(servers.HOST, port, path, token))
    return requests


def list_requests(
    port: int, tokens: Sequence[str], cursors: dict[str, str] | None = None
) -> list[bytes]:
    """The newest page of each token's organisation, or the page after its cursor."""
    requests = []
    for token, org in zip(tokens, token_orgs(len(tokens)), strict=True):
        path = LIST_PATH
        if cursors is not None:
            if org not in cursors:
                continue
            path = f"{LIST_PATH}&cursor={cursors[org]}"
        requests.append(loadgen.get_request(servers.HOST, port, path, token))
    return requests


def bulk_load(databases: dbs.Databases, rows: int) -> None:
    """`rows` more referrals, older than every stored one, spread over the organisations."""
    orgs = payload.ORGS
    if databases.kind == "postgresql":
        made = {
            "id": "md5('scale' || g)::uuid::text",
            "reference": "'S' || lpad(g::text, 12, '0')",
            "org": "(ARRAY[" + ", ".join(f"'{o}'" for o in orgs) + f"])[1 + g % {len(orgs)}]",
            "received_at": "r.received_at - make_interval(secs => g)",
            "updated_at": "r.received_at - make_interval(secs => g)",
        }
        select = ", ".join(made.get(c, f"r.{c}") for c in COLUMNS)
        databases.execute(
            "service",
            f"INSERT INTO referrals ({', '.join(COLUMNS)}) SELECT {select} "
            "FROM (SELECT * FROM referrals ORDER BY received_at LIMIT 1) AS r, "
            f"generate_series(1, {int(rows)}) AS g",
            "ANALYZE referrals",
        )
        return
    cases = " ".join(f"WHEN {i} THEN '{o}'" for i, o in enumerate(orgs))
    made = {
        "id": "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
        "substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || "
        "hex(randomblob(6)))",
        "reference": "'S' || substr('000000000000' || g.n, -12, 12)",
        "org": f"CASE g.n % {len(orgs)} {cases} END",
        "received_at": "strftime('%Y-%m-%d %H:%M:%f', r.received_at, '-' || g.n || ' seconds')",
        "updated_at": "strftime('%Y-%m-%d %H:%M:%f', r.received_at, '-' || g.n || ' seconds')",
    }
    select = ", ".join(made.get(c, f"r.{c}") for c in COLUMNS)
    databases.execute(
        "service",
        f"INSERT INTO referrals ({', '.join(COLUMNS)}) "
        f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {int(rows)}) "
        f"SELECT {select} FROM (SELECT * FROM referrals ORDER BY received_at LIMIT 1) AS r, g",
        "ANALYZE",
    )


def deep_cursors(databases: dbs.Databases, depth_fraction: float = 0.9) -> dict[str, str]:
    """For each organisation, a cursor `depth_fraction` of the way down its list."""
    cursors = {}
    marker = "$1" if databases.kind == "postgresql" else "?"
    for org in payload.ORGS:
        total = databases.rows(
            "service", f"SELECT count(*) FROM referrals WHERE org = {marker}", org
        )[0][0]
        offset = int(total * depth_fraction)
        found = databases.rows(
            "service",
            f"SELECT received_at, id FROM referrals WHERE org = {marker} "
            f"ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET {offset}",
            org,
        )
        if found:
            received_at, referral_id = found[0]
            if isinstance(received_at, str):  # SQLite keeps times as text
                received_at = datetime.fromisoformat(received_at)
            position = SimpleNamespace(received_at=received_at, id=str(referral_id))
            cursors[org] = encode_cursor(position)  # type: ignore[arg-type]
    return cursors
