"""What every scenario shares: the server under test, clients that submit until they are
answered, and the count of what was stored against what the clients were told.

The server is started by the benchmark's launcher (bench/servers.py: a session of its own, so
one signal reaches the whole process group, uvicorn's parent and its workers), with the
benchmark's production settings (bench/run.py) and its bodies and key pair (bench/payload.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import payload, servers
from bench.run import REPO, service_cli, service_env
from service.auth.devkeys import mint_token

SUBMIT = "/v1/referrals"
CHECK = "/v1/eligibility/check"
WORKERS = 2
# A retry waits this long, so that clients answered at once (a reset, a 503) do not spin.
RETRY_PAUSE_S = 0.1


@dataclass(frozen=True)
class Caller:
    org: str
    token: str


def callers(
    keys: payload.KeyPair, orgs: list[str], scopes: tuple[str, ...] = payload.SCOPES
) -> list[Caller]:
    """One token per organisation, signed with the run's key, valid for the whole run."""
    return [
        Caller(
            org,
            mint_token(
                private_key_pem=keys.private_pem,
                issuer=payload.ISSUER,
                audience=payload.AUDIENCE,
                sub=f"fault-client-{org.lower()}",
                org=org,
                scopes=scopes,
                ttl_seconds=3600,
            ),
        )
        for org in orgs
    ]


def fault_env(database_url: str, keys: payload.KeyPair, **overrides: str) -> dict[str, str]:
    """The benchmark's production settings (limits no scenario reaches), metrics off unless a
    scenario names a port."""
    return {**service_env(database_url, keys), "REFERRAL_METRICS_PORT": "0", **overrides}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie holds no socket any more


class Service:
    """`referral-service serve --workers 2` on a port that stays the same across restarts, so
    clients keep retrying the same address. `up` is set while it is serving: clients wait for
    it before resending, since the launcher counts a start done only once the workers are idle
    (and two cores are better spent starting the server than refusing connections)."""

    def __init__(self, work: Path, env: dict[str, str], name: str = "service") -> None:
        self.work = work
        self.env = env
        self.name = name
        self.port = servers.free_port()
        self.base = f"http://{servers.HOST}:{self.port}"
        self.up = asyncio.Event()
        self.server: servers.Server | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        # Metrics files of this start only: a killed worker's files would otherwise add up.
        metrics_dir = self.work / f"{self.name}-metrics-{self.starts}"
        metrics_dir.mkdir()
        argv = [*service_cli(), "serve", "--workers", str(WORKERS), "--port", str(self.port)]
        # In a thread: the launcher blocks, and a scenario's proxy must keep forwarding.
        starting = asyncio.ensure_future(
            asyncio.to_thread(
                servers.start,
                f"{self.name}-{self.starts}",
                argv,
                port=self.port,
                env={**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                log_dir=self.work,
                workers=WORKERS,
                ready_path="/health/ready",
                cwd=REPO,
            )
        )
        try:
            self.server = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: let the launcher finish, then stop what it
            # started, so that a run cut short by its time budget leaves no server behind.
            with contextlib.suppress(Exception):
                await asyncio.to_thread((await starting).stop)
            raise
        self.up.set()

    async def kill(self) -> int:
        """SIGKILL to every process of the server at once; how many processes there were."""
        server = self.server
        assert server is not None
        pids = [server.process.pid, *server.worker_pids()]
        self.up.clear()
        os.killpg(server.process.pid, signal.SIGKILL)
        await asyncio.to_thread(server.process.wait, 10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids):  # the workers hold the listening socket too
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of the killed server still alive: {pids}")
            await asyncio.sleep(0.05)
        return len(pids)

    async def stop(self) -> None:
        self.up.clear()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)


def http_client(base: str, *, connections: int, bound_s: float) -> httpx.AsyncClient:
    """`bound_s`: the longest a request may wait for its answer before it counts as hung."""
    return httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(bound_s, connect=5.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,  # never through a proxy from the environment
    )


@dataclass
class Ledger:
    """Everything the clients sent and were told."""

    retry_statuses: frozenset[int]  # answers after which the same request is sent again
    acknowledged: dict[tuple[str, str], str] = field(default_factory=dict)  # (org, key) -> id
    conflicting: set[tuple[str, str]] = field(default_factory=set)  # a key answered with 2 ids
    statuses: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    retries: int = 0
    transport_errors: int = 0  # no answer: connection refused or reset
    timeouts: int = 0  # no answer within the bound
    unanswered: int = 0  # keys given up at the deadline without a 201
    without_retry_after: int = 0  # 503s without Retry-After
    max_latency_s: float = 0.0
    created_at: list[float] = field(default_factory=list)  # monotonic time of each 201
    samples: list[str] = field(default_factory=list)  # a few unexpected answers

    def record(self, caller: Caller, key: str, response: httpx.Response, latency: float) -> bool:
        """Count an answer; True when it is final for this key."""
        self.statuses[response.status_code] += 1
        self.max_latency_s = max(self.max_latency_s, latency)
        if response.status_code == 201:
            self.created_at.append(time.monotonic())
            referral_id = response.json()["id"]
            known = self.acknowledged.setdefault((caller.org, key), referral_id)
            if known != referral_id:
                self.conflicting.add((caller.org, key))
            return True
        if response.status_code == 503 and not response.headers.get("retry-after"):
            self.without_retry_after += 1
        if response.status_code in self.retry_statuses:
            return False
        if len(self.samples) < 3:
            self.samples.append(f"{response.status_code} {response.text[:200]}")
        return True

    def unexpected(self) -> int:
        """Answers that are neither a 201 nor an allowed reason to retry."""
        allowed = self.retry_statuses | {201}
        return sum(n for status, n in self.statuses.items() if status not in allowed)


async def submit_until_answered(
    http: httpx.AsyncClient,
    caller: Caller,
    key: str,
    body: bytes,
    ledger: Ledger,
    *,
    deadline: float,
    up: asyncio.Event | None = None,
) -> None:
    """POST one referral, again with the same Idempotency-Key and body after no answer or a
    retry status, until it is answered for good or the deadline passes."""
    headers = {
        "Authorization": f"Bearer {caller.token}",
        "Content-Type": "application/json",
        "Idempotency-Key": key,
    }
    first = True
    while time.monotonic() < deadline:
        if not first:
            ledger.retries += 1
            await asyncio.sleep(RETRY_PAUSE_S)
        first = False
        if up is not None:
            await up.wait()  # a killed server: wait for its restart, then send again
        ledger.requests += 1
        started = time.monotonic()
        try:
            response = await http.post(SUBMIT, content=body, headers=headers)
        except httpx.TimeoutException:
            ledger.timeouts += 1
            continue
        except httpx.TransportError:
            ledger.transport_errors += 1
            continue
        if ledger.record(caller, key, response, time.monotonic() - started):
            return
    ledger.unanswered += 1


async def intake(
    http: httpx.AsyncClient,
    pool: list[Caller],
    ledger: Ledger,
    *,
    client: int,
    run: str,
    stop: asyncio.Event,
    deadline: float,
    up: asyncio.Event | None = None,
) -> None:
    """One client: new referrals one after another until `stop`, each submitted until answered
    (the one in hand when `stop` comes is finished too). Every key is new; every body is a
    different infant, so possible-duplicate checks stay as cheap as in real use."""
    n = 0
    while not stop.is_set() and time.monotonic() < deadline:
        caller = pool[(client + n) % len(pool)]
        body = payload.encode(payload.referral_body(client * 1_000_000 + n))
        await submit_until_answered(
            http, caller, f"{run}-{client}-{n}", body, ledger, deadline=deadline, up=up
        )
        n += 1


@dataclass(frozen=True)
class Stored:
    """The database read back after a scenario, against what the clients were told."""

    acknowledged: int  # keys answered 201
    stored: int  # of those, the referral found under its key with the id the client was given
    referrals: int  # rows in referrals
    duplicates: int  # keys answered with two ids, and referrals under more than one key
    orphans: int  # referrals that no idempotency key points at
    audit_valid: bool
    audit_output: str
    # Referrals without exactly one `referral.created` success event: a chain can verify
    # with an event missing if it was never appended.
    unaudited: int = 0

    @property
    def lost(self) -> int:
        return self.acknowledged - self.stored

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{self.lost} acknowledged referrals not stored under their key")
        if self.referrals != self.stored:
            found.append(f"{self.referrals} referrals stored for {self.stored} acknowledged")
        if self.duplicates:
            found.append(f"{self.duplicates} duplicates")
        if self.orphans:
            found.append(f"{self.orphans} referrals without their key")
        if self.unaudited:
            found.append(f"{self.unaudited} referrals without their one creation event")
        if not self.audit_valid:
            found.append(f"audit verify failed: {self.audit_output[-300:]}")
        return found


def dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def count_stored(database_url: str, keys: payload.KeyPair, ledger: Ledger) -> Stored:
    """Read the database directly (not through any proxy) and verify the audit trail with the
    command line an auditor uses."""
    connection = await asyncpg.connect(dsn(database_url), timeout=10)
    try:
        rows = await connection.fetch("SELECT org, key, referral_id FROM idempotency_keys")
        ids = {row["id"] for row in await connection.fetch("SELECT id FROM referrals")}
        created = Counter(
            row["resource_id"]
            for row in await connection.fetch(
                "SELECT resource_id FROM audit_events "
                "WHERE action = 'referral.created' AND outcome = 'success'"
            )
        )
    finally:
        await connection.close()
    by_key = {(row["org"], row["key"]): row["referral_id"] for row in rows}
    referral_ids = {str(i) for i in ids}
    keys_per_referral = Counter(by_key.values())
    stored = sum(
        1
        for k, referral in ledger.acknowledged.items()
        if referral in ids and by_key.get(k) == referral
    )
    command = [*service_cli(), "audit", "verify"]
    # Where the command line offers it, a full re-derivation of every chain, not an
    # incremental check from stored checkpoints: the count must not trust earlier runs.
    usage = await asyncio.to_thread(
        subprocess.run, [*command, "--help"], capture_output=True, timeout=60
    )
    if b"--full" in usage.stdout:
        command.append("--full")
    verify = await asyncio.to_thread(
        subprocess.run,
        command,
        env=fault_env(database_url, keys),
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    return Stored(
        acknowledged=len(ledger.acknowledged),
        stored=stored,
        referrals=len(ids),
        duplicates=len(ledger.conflicting)
        + sum(n - 1 for n in keys_per_referral.values() if n > 1),
        orphans=len(ids - set(by_key.values())),
        audit_valid=verify.returncode == 0,
        audit_output=(verify.stdout + verify.stderr).decode(errors="replace"),
        unaudited=sum(1 for i in referral_ids if created[i] != 1)
        + sum(n for i, n in created.items() if i not in referral_ids),
    )


async def finish(tasks: list[asyncio.Task[None]], timeout: float) -> int:
    """Wait for the clients to finish their keys; cancel whoever is still at it after
    `timeout` and say how many were (each left a key unanswered)."""
    if not tasks:
        return 0
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return len(pending)


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Stop clients that are still running (after a failure): nothing waits for them."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def yes(value: bool) -> str:
    return "yes" if value else "NO"
