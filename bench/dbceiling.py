"""E_db: what PostgreSQL itself can do of this work, with the service taken out of the way.

The statements come from the service, not from a copy of them: `capture()` runs three real
intakes (`POST /v1/referrals` through the app, in process) on a scratch database and records
every statement the service sends for them, with its parameters and the rows it got back
(a SQLAlchemy cursor event). `script()` turns the captured intake into a pgbench script:

* each statement's text is kept as sent (prepared, `$n` parameters become pgbench variables);
* a parameter that the service took from an earlier statement's answer (the audit head the
  store statement locks: chain, chain_seq + 1, hash, seq) is wired to that answer with
  `\\gset`. The two captured intakes are made to take distinct chains with distinct heads
  (chains below 11, then below 23, are held locked by another connection), so a value only
  matches an answer when it came from it;
* a short value that differs between the two intakes (ids, reference, idempotency key, lock
  id, request id, hashes, match keys) is drawn at random per transaction, so unique indexes
  see unique rows; every other value (codes such as the outcome, the ~2 KB payload, the
  decision, the replay snapshot, times) is sent as captured. None is sent as NULL.

pgbench then runs that script in prepared mode (BEGIN; the statements; COMMIT), 32 clients,
for a bounded time, on the same PostgreSQL. The database's CPU per transaction comes from its
backends' /proc counters. What differs from the service: random ids are up to 18 digits, not 36
characters (rows a few bytes shorter), and the hash of the audit event is not recomputed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import payload, servers

CLIENTS = 32
# Values that vary per intake and are at most this long are drawn at random per transaction
# (keys, ids, hashes); longer ones are documents (payload, snapshot) and are sent as captured.
_SHORT = 100
_PARAM = re.compile(r"\$(\d+)\b")


@dataclass
class Statement:
    sql: str
    params: tuple[Any, ...]
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class Captured:
    intakes: list[list[Statement]] = field(default_factory=list)


def pgbench_binary() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    return str(candidates[-1]) if candidates else None


# --- capture ----------------------------------------------------------------------------------


async def capture(database_url: str, admin_dsn: str, keys: payload.KeyPair) -> Captured:
    """Migrate `database_url`, then run three intakes through the app and record the last two."""
    import httpx
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from api.app import create_app
    from service.core.database import create_engine
    from service.core.migrate import upgrade
    from service.core.settings import Settings

    settings = Settings(
        env="production",  # type: ignore[arg-type]
        database_url=database_url,
        jwt_issuer=payload.ISSUER,
        jwt_audience=payload.AUDIENCE,
        jwt_public_key_file=keys.public_file,
        jwt_algorithms=("RS256",),
        audit_head_log_seconds=0,
        rate_limits="100000000/minute",
        rate_limits_submit="100000000/minute",
        rate_limits_anonymous="100000000/minute",
        # The in-process webhook dispatcher's polls would be recorded among intake's statements.
        webhook_dispatcher=False,
        # One intake per transaction, the statements a lone intake sends: E_db is what the
        # database can do at that grain. Group commit (E2 under load) sends the same work for
        # many intakes in one statement each, which is how the service can pass this ceiling.
        intake_batch_max=1,
    )
    engine = create_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    raw_dsn = admin_dsn if "://" in admin_dsn else database_url
    # Distinct head positions per chain, so that a value taken from a head is recognisable.
    admin = await asyncpg.connect(raw_dsn, timeout=5)
    try:
        await admin.execute(
            "UPDATE audit_chain_heads SET chain_seq = 1000 + chain * 37, "
            "hash = md5(chain::text) || md5((chain + 100)::text)"
        )
    finally:
        await admin.close()

    recording: list[Statement] | None = None

    def after(_conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if recording is None:
            return
        rows = [tuple(r) for r in getattr(cursor, "_rows", ())]
        columns = [d[0] for d in (cursor.description or ())]
        recording.append(Statement(statement, tuple(params or ()), columns, rows))

    token_pool = payload.tokens(keys, count=1)
    bodies = payload.bodies(count=3)
    # create_app points this process's logging at stdout, where only the table belongs: the
    # capture's warnings go with the progress (stderr), its request lines nowhere.
    with contextlib.redirect_stdout(sys.stderr):
        app = create_app(settings)
    logging.getLogger().setLevel(logging.WARNING)
    captured = Captured()
    event.listen(Engine, "after_cursor_execute", after)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                for n, hold_below in enumerate((None, 11, 23)):
                    holder = None
                    if hold_below is not None:
                        holder = await asyncpg.connect(raw_dsn, timeout=5)
                        await holder.execute("BEGIN")
                        await holder.execute(
                            "SELECT chain FROM audit_chain_heads WHERE chain < $1 FOR UPDATE",
                            hold_below,
                        )
                    recording = [] if hold_below is not None else None
                    try:
                        response = await http.post(
                            "/v1/referrals",
                            content=bodies[n],
                            headers={
                                "Authorization": f"Bearer {token_pool[0]}",
                                "Content-Type": "application/json",
                                "Idempotency-Key": f"dbceiling-{n}-{time.time_ns()}",
                            },
                        )
                    finally:
                        if holder is not None:
                            await holder.close()
                    if response.status_code != 201:
                        raise RuntimeError(f"capture intake answered {response.status_code}")
                    if recording is not None:
                        captured.intakes.append(recording)
    finally:
        event.remove(Engine, "after_cursor_execute", after)
        recording = None
    return captured


# --- the pgbench script -----------------------------------------------------------------------


@dataclass
class Script:
    text: str
    constants: dict[str, str]
    statements: int
    randomised: int
    wired: int


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bytes):
        raise ValueError("binary parameters are not supported by the pgbench script")
    return str(value)


def script(captured: Captured) -> Script:
    """The pgbench script (and its -D constants) for the captured intake."""
    if len(captured.intakes) != 2:
        raise ValueError("need exactly two captured intakes")
    a_run, b_run = captured.intakes
    if [s.sql for s in a_run] != [s.sql for s in b_run]:
        raise ValueError("the two captured intakes issued different statements")
    lines = ["BEGIN;"]
    pre: list[str] = []
    constants: dict[str, str] = {}
    randomised = wired = 0
    answers: list[tuple[int, str, Any, Any]] = []  # (statement, column, value in A, in B)
    # The same value in the same places (the referral's id in four statements) is one variable.
    drawn: dict[tuple[str, str], str] = {}
    for k, (a, b) in enumerate(zip(a_run, b_run, strict=True)):
        names: dict[int, str] = {}
        for n, (va, vb) in enumerate(zip(a.params, b.params, strict=True), start=1):
            source = _wired(va, vb, answers)
            if source is not None:
                var, plus_one = source
                if plus_one:
                    after_var = f"{var}_p1"
                    if f"\\set {after_var} :{var} + 1" not in lines:
                        lines.append(f"\\set {after_var} :{var} + 1")
                    var = after_var
                names[n] = var
                wired += 1
            elif vb is None:
                names[n] = "NULL"
            elif (
                va != vb
                and not isinstance(vb, Enum)
                and (
                    (isinstance(vb, int) and not isinstance(vb, bool))
                    or (isinstance(vb, str) and len(vb) <= _SHORT)
                )
            ):
                seen = (repr(va), repr(vb))
                if seen not in drawn:
                    drawn[seen] = f"r{k}_{n}"
                    bounds = "1, 9000000000000000000" if isinstance(vb, int) else _digits(vb)
                    pre.append(f"\\set r{k}_{n} random({bounds})")
                    randomised += 1
                names[n] = drawn[seen]
            else:
                names[n] = f"c{k}_{n}"
                constants[names[n]] = _as_text(vb)

        def substitute(match: re.Match[str], names: dict[int, str] = names) -> str:
            name = names[int(match.group(1))]
            return name if name == "NULL" else f":{name}"

        sql = " ".join(_PARAM.sub(substitute, b.sql).split())
        single_row = len(a.rows) == 1 and len(b.rows) == 1 and a.columns
        if single_row:
            lines.append(f"{sql} \\gset s{k}_")
            for c, column in enumerate(b.columns):
                answers.append((k, f"s{k}_{column}", a.rows[0][c], b.rows[0][c]))
        else:
            lines.append(f"{sql};")
    lines.append("COMMIT;")
    return Script("\n".join([*pre, *lines]) + "\n", constants, len(a_run), randomised, wired)


def _digits(value: str) -> str:
    """pgbench bounds for a random number as long as `value` (at most 18 digits): it fits the
    column the value went to."""
    width = max(1, min(18, len(value)))
    return f"{10 ** (width - 1)}, {10**width - 1}"


def _wired(va: Any, vb: Any, answers: list[tuple[int, str, Any, Any]]) -> tuple[str, bool] | None:
    """The variable of an earlier answer this parameter was taken from (and whether + 1)."""
    if va is None or vb is None or isinstance(vb, bool) or va == vb:
        return None
    for _k, var, aa, ab in answers:
        if aa == ab or aa is None or isinstance(ab, bool):
            continue
        if type(va) is type(aa) and va == aa and vb == ab:
            return var, False
        if isinstance(aa, int) and isinstance(va, int) and va == aa + 1 and vb == ab + 1:
            return var, True
    return None


# --- running pgbench --------------------------------------------------------------------------


@dataclass
class Result:
    tps: float | None
    transactions: int
    failed: int
    latency_ms: float | None
    db_cpu_ms: float | None
    pgbench_cpu_ms: float | None
    clients: int
    seconds: float
    statements: int
    randomised: int
    wired: int
    rows_before: int
    rows_after: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_pgbench(
    binary: str,
    dsn: str,
    generated: Script,
    *,
    work: Path,
    seconds: float,
    backend_pids: Callable[[], list[int]],
    count_rows: Callable[[], int],
    clients: int = CLIENTS,
) -> Result:
    """Run the script for `seconds` with `clients` clients in prepared mode."""
    path = work / "intake.pgbench"
    path.write_text(generated.text)
    parts = urlsplit(dsn)
    argv = [
        binary,
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(max(1, round(seconds))),
        "-f",
        str(path),
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
    ]
    for name, value in generated.constants.items():
        argv += ["-D", f"{name}={value}"]
    argv.append(parts.path.lstrip("/"))
    rows_before = count_rows()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    # Sample the backends' CPU once they are connected and again just before the end.
    time.sleep(min(1.0, seconds / 4))
    pids = backend_pids()
    t0, cpu0 = time.perf_counter(), servers.cpu_seconds(pids)
    deadline = time.monotonic() + seconds + 30
    while process.poll() is None and time.monotonic() < deadline:
        if time.perf_counter() - t0 >= seconds - min(1.0, seconds / 4) - 0.3:
            break
        time.sleep(0.1)
    t1, cpu1 = time.perf_counter(), servers.cpu_seconds(pids)
    try:
        out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    text = out.decode(errors="replace")
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    pgbench_cpu = (children1.ru_utime + children1.ru_stime) - (
        children0.ru_utime + children0.ru_stime
    )
    rows_after = count_rows()

    def number(pattern: str) -> float | None:
        found = re.search(pattern, text)
        return float(found.group(1)) if found else None

    tps = number(r"tps = ([\d.]+) \(without initial connection time\)")
    done = int(number(r"number of transactions actually processed: (\d+)") or 0)
    failed = int(number(r"number of failed transactions: (\d+)") or 0)
    latency = number(r"latency average = ([\d.]+) ms")
    db_cpu_ms = None
    if tps and pids and t1 > t0:
        db_cpu_ms = round(1000 * (cpu1 - cpu0) / (tps * (t1 - t0)), 3)
    error = None
    if process.returncode != 0 or not tps:
        error = (err.decode(errors="replace") or text)[-600:]
    return Result(
        tps=round(tps, 1) if tps else None,
        transactions=done,
        failed=failed,
        latency_ms=latency,
        db_cpu_ms=db_cpu_ms,
        # pgbench is the load generator here: on the same cores, so its CPU is reported.
        pgbench_cpu_ms=round(1000 * pgbench_cpu / done, 3) if done else None,
        clients=clients,
        seconds=seconds,
        statements=generated.statements,
        randomised=generated.randomised,
        wired=generated.wired,
        rows_before=rows_before,
        rows_after=rows_after,
        error=error,
    )


def measure(
    database_url: str,
    raw_dsn: str,
    keys: payload.KeyPair,
    *,
    work: Path,
    seconds: float,
    backend_pids: Callable[[], list[int]],
    count_rows: Callable[[], int],
) -> Result | None:
    """Capture, generate, run; None when pgbench is not installed."""
    binary = pgbench_binary()
    if binary is None:
        return None
    generated = script(asyncio.run(capture(database_url, raw_dsn, keys)))
    return run_pgbench(
        binary,
        raw_dsn,
        generated,
        work=work,
        seconds=seconds,
        backend_pids=backend_pids,
        count_rows=count_rows,
    )
