"""The benchmark run: E0 (framework ceiling), E2 (our service), E1 (naive peer), one after
another with the same uvicorn settings, then the table and the JSON. See bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import db as dbs
from bench import dbceiling, loadgen, payload, reads, report, servers

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
PATH = "/v1/referrals"


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts; --quick keeps the whole run under a minute."""

    warmup_s: float
    closed_s: float
    open_s: float
    drain_s: float
    db_s: float = 5.0  # E_db: pgbench
    reads_s: float = 3.0  # each read phase (status, list)
    scale_rows: int = 0  # scale phase: referrals bulk-loaded before the deep-cursor pages; 0: none
    scale_s: float = 5.0  # each page phase of the scale run
    closed_connections: int = 32
    open_connections: int = 64
    open_fractions: tuple[float, ...] = (0.5, 0.8)
    max_rps: float = 50_000  # a bound on any phase's request count, whatever the rate


QUICK = Plan(warmup_s=1.0, closed_s=3.0, open_s=3.0, drain_s=2.0, db_s=4.0, reads_s=2.0)
FULL = Plan(
    warmup_s=3.0,
    closed_s=12.0,
    open_s=15.0,
    drain_s=5.0,
    db_s=12.0,
    reads_s=8.0,
    scale_rows=200_000,
)
# The scale phase's pages are timed with few connections: latency of the query, not queueing.
SCALE_CONNECTIONS = 4


@dataclass
class Meter:
    """CPU of the server's workers, its database backends and the whole machine over a phase.

    Database backends are found by database name at both ends: one that appeared during the
    phase counts whole, one that ended during it is not counted (pools keep theirs open).
    """

    worker_pids: list[int]
    db_pids: Callable[[], list[int]]
    t0: float = 0.0
    worker0: float = 0.0
    db0: dict[int, float] = field(default_factory=dict)
    busy0: float = 0.0
    total0: float = 0.0
    result: dict[str, float | None] = field(default_factory=dict)

    def __enter__(self) -> Meter:
        self.db0 = {p: servers.cpu_seconds([p]) for p in self.db_pids()}
        self.t0 = time.perf_counter()
        self.worker0 = servers.cpu_seconds(self.worker_pids)
        self.busy0, self.total0 = servers.machine_busy_seconds()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self.t0
        busy, total = servers.machine_busy_seconds()
        worker = servers.cpu_seconds(self.worker_pids) - self.worker0
        db: float | None = None
        for pid in set(self.db_pids()) | set(self.db0):
            now = servers.cpu_seconds([pid])
            if now:
                db = (db or 0.0) + max(0.0, now - self.db0.get(pid, 0.0))
        self.result = {
            "server_cpu_s": worker,
            "db_cpu_s": db,
            "machine_busy_pct": 100 * (busy - self.busy0) / max(1e-9, total - self.total0),
            "meter_wall_s": wall,
        }


@dataclass
class Engine:
    key: str  # "ceiling" / "naive" / "service"
    label: str
    server: servers.Server
    factory: loadgen.RequestFactory
    db_pids: Callable[[], list[int]]
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    ok_total: int = 0  # every 2xx this engine returned, warm-up included
    sent_total: int = 0
    unknown_total: int = 0  # sent but never answered


def _phase(
    engine: Engine,
    name: str,
    run: Callable[[], loadgen.PhaseResult],
    *,
    intakes: bool = True,
) -> dict[str, Any]:
    meter = Meter(engine.server.worker_pids(), engine.db_pids)
    with meter:
        result = run()
    if intakes:  # reads create nothing: the consistency check counts intakes only
        engine.ok_total += result.ok
        engine.sent_total += result.sent
        engine.unknown_total += result.unknown
    summary = result.summary()
    summary["ok_rps"] = round(result.ok / result.wall_s, 1) if result.wall_s else 0.0
    summary.update({k: None if v is None else round(v, 3) for k, v in meter.result.items()})
    server_cpu, db_cpu = meter.result["server_cpu_s"], meter.result["db_cpu_s"]
    if result.completed:
        summary["server_cpu_ms_per_request"] = round(1000 * (server_cpu or 0) / result.completed, 3)
        # None where no database process of ours was seen (E0; SQLite runs inside the server)
        summary["db_cpu_ms_per_request"] = (
            None if db_cpu is None else round(1000 * db_cpu / result.completed, 3)
        )
    engine.phases[name] = summary
    _progress(
        f"  {engine.key:<8} {name:<10} {summary['ok_rps']:>8.1f} ok/s"
        f"  p50 {summary['p50_ms']:.2f} p99 {summary['p99_ms']:.2f} ms"
        f"  gen CPU {summary['generator_cpu_pct']:.0f}%"
        + (f"  censored {result.censored}" if result.censored else "")
        + (f"  errors {result.errors}" if result.errors else "")
        + (f"  non-2xx {result.completed - result.ok}" if result.completed - result.ok else "")
    )
    return summary


def _closed(
    engine: Engine,
    plan: Plan,
    name: str,
    seconds: float,
    *,
    requests: Callable[[], bytes] | None = None,
    connections: int | None = None,
) -> dict[str, Any]:
    """Closed loop; `requests` (reads) instead of the engine's intakes."""
    return _phase(
        engine,
        name,
        lambda: loadgen.run(
            loadgen.run_closed(
                servers.HOST,
                engine.server.port,
                requests or engine.factory.next,
                connections=connections or plan.closed_connections,
                duration=seconds,
                max_requests=int(plan.max_rps * seconds),
            )
        ),
        intakes=requests is None,
    )


def _open(engine: Engine, plan: Plan, name: str, rate: float) -> dict[str, Any]:
    return _phase(
        engine,
        name,
        lambda: loadgen.run(
            loadgen.run_open(
                servers.HOST,
                engine.server.port,
                engine.factory.next,
                rate=min(rate, plan.max_rps),
                duration=plan.open_s,
                connections=plan.open_connections,
                drain=plan.drain_s,
            )
        ),
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _clean_env() -> dict[str, str]:
    # Nothing inherited may change a server's settings: every REFERRAL_*/BENCH_* is ours.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REFERRAL_", "BENCH_NAIVE_", "BENCH_JWT_"))
    }


def service_env(database_url: str, keys: payload.KeyPair) -> dict[str, str]:
    """Production settings for E2, as a deployer would set them."""
    return {
        **_clean_env(),
        "REFERRAL_ENV": "production",
        "REFERRAL_DATABASE_URL": database_url,
        "REFERRAL_JWT_PUBLIC_KEY_FILE": str(keys.public_file),
        "REFERRAL_JWT_ISSUER": payload.ISSUER,
        "REFERRAL_JWT_AUDIENCE": payload.AUDIENCE,
        "REFERRAL_JWT_ALGORITHMS": "RS256",
        "REFERRAL_LOG_FORMAT": "json",
        # The benchmark measures capacity: the limiter still runs (and costs what it costs),
        # but with limits no benchmark phase reaches, so no 429 stands in for work done.
        "REFERRAL_RATE_LIMITS": "100000000/minute",
        "REFERRAL_RATE_LIMITS_SUBMIT": "100000000/minute",
        "REFERRAL_RATE_LIMITS_ANONYMOUS": "100000000/minute",
    }


def service_cli() -> list[str]:
    script = Path(sys.executable).with_name("referral-service")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


@contextmanager
def _started(
    key: str,
    label: str,
    argv: list[str],
    env: dict[str, str],
    port: int,
    work: Path,
    ready_path: str,
    tokens: list[str],
    bodies: list[bytes],
    key_prefix: str,
) -> Iterator[Engine]:
    _progress(f"starting {label} on port {port}")
    server = servers.start(
        key,
        argv,
        port=port,
        env=env,
        log_dir=work,
        workers=WORKERS,
        ready_path=ready_path,
        cwd=REPO,
    )
    try:
        factory = loadgen.RequestFactory(
            host=servers.HOST,
            port=port,
            path=PATH,
            tokens=tokens,
            bodies=bodies,
            key_prefix=f"{key_prefix}-{key}-",
        )
        engine = Engine(key, label, server, factory, lambda: [])
        yield engine
        engine.phases["_rss_mb"] = {"workers": server.worker_rss_mb()}
    finally:
        server.stop()
        if server.process.returncode not in (0, -signal.SIGTERM, None):
            _progress(f"  {key} exited with {server.process.returncode}:\n{server.log_tail()}")


@contextmanager
def started_service(
    databases: dbs.Databases,
    env: dict[str, str],
    work: Path,
    tokens: list[str],
    bodies: list[bytes],
    nonce: str,
) -> Iterator[Engine]:
    """E2: `referral-service migrate`, then `referral-service serve --workers 2`."""
    migrate = subprocess.run(
        [*service_cli(), "migrate"], env=env, cwd=REPO, capture_output=True, timeout=120
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{migrate.stderr.decode(errors='replace')}")
    port = servers.free_port()
    with _started(
        "service",
        "E2 our service",
        [*service_cli(), "serve", "--workers", str(WORKERS), "--port", str(port)],
        env,
        port,
        work,
        "/health/live",
        tokens,
        bodies,
        nonce,
    ) as e2:
        e2.db_pids = lambda: databases.backend_pids("service")
        yield e2


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.scale is not None:
        plan = replace(plan, scale_rows=args.scale)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    databases = dbs.choose(work, force_sqlite=args.sqlite)
    _progress(f"database: {databases.label}; work dir {work}")
    keys = payload.make_keypair(work)
    tokens = payload.tokens(keys)
    bodies = payload.bodies(args.bodies)
    nonce = secrets.token_hex(4)
    engines: dict[str, Engine] = {}
    consistency: dict[str, Any] = {}
    naive_extra: dict[str, Any] = {}
    db_ceiling: dict[str, Any] | None = None
    databases.create()
    try:
        # E0: the framework ceiling.
        port = servers.free_port()
        with _started(
            "ceiling",
            "E0 framework ceiling",
            [sys.executable, "-m", "bench.serve", "ceiling", "--port", str(port)],
            _clean_env(),
            port,
            work,
            "/",
            tokens,
            bodies,
            nonce,
        ) as e0:
            engines["ceiling"] = e0
            _closed(e0, plan, "warmup", plan.warmup_s)
            _closed(e0, plan, "capacity", plan.closed_s)

        # E_db: PostgreSQL alone running the statements the service issues per intake.
        db_ceiling = _db_ceiling(databases, keys, work, plan)

        # E2: our service, migrated first, with production settings.
        env = service_env(databases.service_url, keys)
        if args.db_pool:
            env["REFERRAL_DB_POOL_SIZE"] = str(args.db_pool)
        if args.intake_batch:
            env["REFERRAL_INTAKE_BATCH_MAX"] = str(args.intake_batch)
        if args.read_audit_batch:
            env["REFERRAL_READ_AUDIT_BATCH_MAX"] = str(args.read_audit_batch)
        with started_service(databases, env, work, tokens, bodies, nonce) as e2:
            engines["service"] = e2
            _closed(e2, plan, "warmup", plan.warmup_s)
            capacity = _closed(e2, plan, "capacity", plan.closed_s)["ok_rps"]
            for fraction in plan.open_fractions:
                _open(e2, plan, f"open@{fraction:.0%}", fraction * capacity)
            _reads(e2, plan, databases, tokens)
            # Before the scale phase, whose bulk-loaded rows no intake answered for.
            consistency = _check_service(databases, env, e2)
            if plan.scale_rows:
                _scale(e2, plan, databases, tokens)

        # E1: the naive peer, at the same absolute rates as E2.
        from bench.apps import naive

        naive.create_tables(databases.naive_url)
        naive_env = {
            **_clean_env(),
            "BENCH_NAIVE_DATABASE_URL": databases.naive_url,
            "BENCH_JWT_PUBLIC_KEY_FILE": str(keys.public_file),
            "BENCH_JWT_ISSUER": payload.ISSUER,
            "BENCH_JWT_AUDIENCE": payload.AUDIENCE,
        }
        port = servers.free_port()
        with _started(
            "naive",
            "E1 naive peer",
            [sys.executable, "-m", "bench.serve", "naive", "--port", str(port)],
            naive_env,
            port,
            work,
            "/",
            tokens,
            bodies,
            nonce,
        ) as e1:
            engines["naive"] = e1
            _closed(e1, plan, "warmup", plan.warmup_s)
            e1.db_pids = lambda: databases.backend_pids("naive")
            _closed(e1, plan, "capacity", plan.closed_s)
            for fraction in plan.open_fractions:
                _open(e1, plan, f"open@{fraction:.0%}", fraction * capacity)
        naive_extra = _check_naive(databases, e1)
    finally:
        try:
            databases.drop()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _results(args, plan, databases, engines, consistency, naive_extra, db_ceiling, started)


def _db_ceiling(
    databases: dbs.Databases, keys: payload.KeyPair, work: Path, plan: Plan
) -> dict[str, Any] | None:
    """E_db (PostgreSQL only): pgbench running the captured intake; see bench/dbceiling.py."""
    if databases.kind != "postgresql":
        _progress("E_db: skipped (SQLite: no pgbench)")
        return None
    _progress(f"E_db: capturing one intake's statements, then pgbench for {plan.db_s:.0f} s")
    try:
        result = dbceiling.measure(
            databases.async_url("dbceiling"),
            databases.raw_dsn("dbceiling"),
            keys,
            work=work,
            seconds=plan.db_s,
            backend_pids=lambda: databases.backend_pids("dbceiling"),
            count_rows=lambda: databases.scalar("dbceiling", "SELECT count(*) FROM referrals"),
        )
    except (ValueError, RuntimeError, OSError) as exc:
        # The capture no longer fits a pgbench script (say, intakes that issue different
        # statements): the run goes on, and the JSON and the table say why E_db is missing.
        _progress(f"E_db: could not be measured: {exc}")
        return {"tps": None, "error": f"{type(exc).__name__}: {exc}"}
    if result is None:
        _progress("E_db: skipped (pgbench not found)")
        return None
    _progress(
        f"  db       pgbench    {result.tps or 0:>8.1f} tps  {result.clients} clients, "
        f"{result.statements} statements + BEGIN/COMMIT, db CPU {result.db_cpu_ms} ms/txn, "
        f"{result.rows_after - result.rows_before} rows"
        + (f"  ERROR {result.error}" if result.error else "")
    )
    return result.to_dict()


def _reads(e2: Engine, plan: Plan, databases: dbs.Databases, tokens: list[str]) -> None:
    """Status and list requests per second, each writing its audit event."""
    status = loadgen.Rotation(reads.status_requests(databases, e2.server.port, tokens))
    _closed(e2, plan, "status", plan.reads_s, requests=status.next)
    listing = loadgen.Rotation(reads.list_requests(e2.server.port, tokens))
    _closed(e2, plan, "list", plan.reads_s, requests=listing.next)


def _scale(e2: Engine, plan: Plan, databases: dbs.Databases, tokens: list[str]) -> None:
    """First page against a page deep in the list, after bulk-loading `scale_rows` referrals."""
    _progress(f"  service  scale: loading {plan.scale_rows:,} referrals")
    t0 = time.monotonic()
    reads.bulk_load(databases, plan.scale_rows)
    _progress(f"  service  scale: loaded in {time.monotonic() - t0:.1f} s")
    first = loadgen.Rotation(reads.list_requests(e2.server.port, tokens))
    deep = loadgen.Rotation(
        reads.list_requests(e2.server.port, tokens, reads.deep_cursors(databases))
    )
    for name, requests in (("page@top", first), ("page@deep", deep)):
        _closed(
            e2,
            plan,
            name,
            plan.scale_s,
            requests=requests.next,
            connections=SCALE_CONNECTIONS,
        )


def _check_service(databases: dbs.Databases, env: dict[str, str], e2: Engine) -> dict[str, Any]:
    """Rows written must equal 201s returned, and the audit chain must verify."""
    referrals = databases.scalar("service", "SELECT count(*) FROM referrals")
    keys = databases.scalar("service", "SELECT count(*) FROM idempotency_keys")
    events = databases.scalar("service", "SELECT count(*) FROM audit_events")
    verify = subprocess.run(
        [*service_cli(), "audit", "verify", "--full"],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=300,
    )
    checked = None
    try:
        checked = json.loads(verify.stdout)["events_checked"]
    except (ValueError, KeyError, TypeError):
        pass
    created = e2.ok_total
    result = {
        "responses_201": created,
        "requests_sent": e2.sent_total,
        "requests_unanswered": e2.unknown_total,
        "referral_rows": referrals,
        "idempotency_rows": keys,
        "audit_events": events,
        "audit_verify_exit": verify.returncode,
        "audit_events_checked": checked,
    }
    result["consistent"] = referrals == created and keys == created and verify.returncode == 0
    _progress(
        f"  service  consistency: {referrals} rows / {created} 201s, audit verify exit "
        f"{verify.returncode} ({checked} events)"
    )
    return result


def _check_naive(databases: dbs.Databases, e1: Engine) -> dict[str, Any]:
    rows = databases.scalar("naive", "SELECT count(*) FROM naive_referral")
    forks = databases.scalar(
        "naive", "SELECT count(*) - count(DISTINCT prev_hash) FROM naive_audit_event"
    )
    return {"responses_201": e1.ok_total, "referral_rows": rows, "audit_chain_forks": forks}


def _results(
    args: argparse.Namespace,
    plan: Plan,
    databases: dbs.Databases,
    engines: dict[str, Engine],
    consistency: dict[str, Any],
    naive_extra: dict[str, Any],
    db_ceiling: dict[str, Any] | None,
    started: float,
) -> dict[str, Any]:
    def phase(engine: str, name: str) -> dict[str, Any]:
        return engines[engine].phases.get(name, {})

    ceiling = phase("ceiling", "capacity").get("ok_rps", 0.0)
    naive = phase("naive", "capacity").get("ok_rps", 0.0)
    service = phase("service", "capacity").get("ok_rps", 0.0)
    s50, s80 = phase("service", "open@50%"), phase("service", "open@80%")
    db_tps = (db_ceiling or {}).get("tps")
    first_page, deep_page = phase("service", "page@top"), phase("service", "page@deep")
    deep_ratio = None
    if first_page.get("p50_ms") and deep_page.get("p50_ms"):
        deep_ratio = round(deep_page["p50_ms"] / first_page["p50_ms"], 2)
    n50, n80 = phase("naive", "open@50%"), phase("naive", "open@80%")
    rss = {k: e.phases.get("_rss_mb", {}).get("workers", []) for k, e in engines.items()}
    all_phases = [p for e in engines.values() for n, p in e.phases.items() if n != "_rss_mb"]
    generator_cpu = max((p["generator_cpu_pct"] for p in all_phases), default=0.0)
    warnings = []
    for key, engine in engines.items():
        for name, p in engine.phases.items():
            if name.startswith("_"):
                continue
            bad = p["completed"] - sum(n for s, n in p["statuses"].items() if 200 <= int(s) < 300)
            if bad or p["errors"]:
                warnings.append(
                    f"{key} {name}: {bad} non-2xx responses, {p['errors']} errors "
                    f"(e.g. {p.get('sample_error', '?')[:160]})"
                )
            if p["censored"]:
                warnings.append(
                    f"{key} {name}: {p['censored']} requests unanswered when the phase stopped "
                    "(counted at their wait so far: the percentiles are lower bounds)"
                )
            if p["generator_cpu_pct"] > 60:
                warnings.append(
                    f"{key} {name}: the load generator used {p['generator_cpu_pct']:.0f}% of a "
                    "core: it may have limited this phase"
                )
    if db_ceiling and db_ceiling.get("error"):
        warnings.append(f"E_db: {db_ceiling['error'][:300]}")
    out: dict[str, Any] = {
        "ceiling_rps": ceiling,
        "naive_rps": naive,
        "service_rps": service,
        "service_p50_ms": s50.get("p50_ms"),
        "service_p99_ms": s50.get("p99_ms"),
        "service_p99_9_ms": s50.get("p99.9_ms"),
        "service_p50_ms_80": s80.get("p50_ms"),
        "service_p99_ms_80": s80.get("p99_ms"),
        "service_p99_9_ms_80": s80.get("p99.9_ms"),
        "naive_p50_ms": n50.get("p50_ms"),
        "naive_p99_ms": n50.get("p99_ms"),
        "naive_p99_ms_80": n80.get("p99_ms"),
        "rss_mb": max(rss.get("service") or [0.0]),
        "rss_mb_per_worker": rss,
        "database": databases.kind,
        "database_version": databases.version,
        "database_tls": databases.tls,
        "consistent": bool(consistency.get("consistent")),
        "consistency": consistency,
        "naive_consistency": naive_extra,
        "service_vs_ceiling": round(service / ceiling, 3) if ceiling else None,
        "service_vs_naive": round(service / naive, 2) if naive else None,
        "db_ceiling_tps": db_tps,
        "service_vs_db": round(service / db_tps, 3) if db_tps else None,
        "db_ceiling": db_ceiling,
        "service_cpu_ms": phase("service", "capacity").get("server_cpu_ms_per_request"),
        "service_db_cpu_ms": phase("service", "capacity").get("db_cpu_ms_per_request"),
        "status_rps": phase("service", "status").get("ok_rps"),
        "list_rps": phase("service", "list").get("ok_rps"),
        "deep_page_ratio": deep_ratio,
        "machine_busy_pct_max": max(
            (p.get("machine_busy_pct") or 0 for p in all_phases), default=0
        ),
        "generator_cpu_pct_max": generator_cpu,
        "targets": {
            "service_ge_30pct_of_ceiling": bool(ceiling and service >= 0.3 * ceiling),
            "service_ge_3x_naive": bool(naive and service >= 3 * naive),
            "service_p99_le_25ms_at_50pct": bool(s50 and s50.get("p99_ms", 1e9) <= 25),
            "service_ge_50pct_of_db": bool(db_tps and service >= 0.5 * db_tps),
            "service_cpu_le_0_8ms": bool(
                (phase("service", "capacity").get("server_cpu_ms_per_request") or 1e9) <= 0.8
            ),
            "service_p99_le_25ms_at_80pct": bool(s80 and s80.get("p99_ms", 1e9) <= 25),
            "status_ge_3000rps": bool((phase("service", "status").get("ok_rps") or 0) >= 3000),
            "list_ge_2000rps": bool((phase("service", "list").get("ok_rps") or 0) >= 2000),
            "deep_page_within_2x": None if deep_ratio is None else deep_ratio <= 2,
        },
        "warnings": warnings,
        "mode": "quick" if args.quick else "full",
        "plan": plan.__dict__,
        "workers": WORKERS,
        "db_pool": args.db_pool,
        "intake_batch": args.intake_batch,
        "read_audit_batch": args.read_audit_batch,
        "bodies": args.bodies,
        "machine": machine(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "phases": {k: e.phases for k, e in engines.items()},
    }
    return out


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": mem_gib,
        "python": platform.python_version(),
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases: under a minute")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument(
        "--sqlite", action="store_true", help="use SQLite even if PostgreSQL is available"
    )
    parser.add_argument(
        "--scale",
        type=int,
        metavar="ROWS",
        help="referrals to bulk-load for the deep-cursor phase (full run: 200000; 0: skip)",
    )
    parser.add_argument(
        "--bodies",
        type=int,
        default=payload.DEFAULT_BODIES,
        metavar="N",
        help=f"distinct referral bodies (infants) the requests rotate through "
        f"(default {payload.DEFAULT_BODIES}; 16 was issue 7's mix)",
    )
    parser.add_argument(
        "--db-pool",
        type=int,
        metavar="N",
        help="E2's REFERRAL_DB_POOL_SIZE (per worker) instead of the production default",
    )
    parser.add_argument(
        "--intake-batch",
        type=int,
        metavar="N",
        help="E2's REFERRAL_INTAKE_BATCH_MAX instead of the default (1: no group commit, one "
        "transaction per intake, as before issue 15's third pass)",
    )
    parser.add_argument(
        "--read-audit-batch",
        type=int,
        metavar="N",
        help="E2's REFERRAL_READ_AUDIT_BATCH_MAX instead of the default (1: each read's audit "
        "event in the read's own transaction, as before issue 15's fourth pass)",
    )
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    results = run(args)
    print(report.table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        _progress(f"wrote {args.json}")
    return 0 if results["consistent"] else 1
