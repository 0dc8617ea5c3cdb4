"""PostgreSQL unreachable for a few seconds under load, through a TCP proxy the run controls
(tests/ops/tcp_proxy.py): the shared PostgreSQL server is never stopped.

While the database is away every request must still be answered, within a bound, with a 503
and `Retry-After` (never a 500, never a dropped connection); clients retry with the same
Idempotency-Key. Once the proxy is back the service recovers by itself (the figure is the
time to the first 201), and every 201 must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bench import payload
from tests.faults.harness import (
    Ledger,
    Service,
    Stored,
    callers,
    cancel,
    count_stored,
    fault_env,
    finish,
    http_client,
    intake,
    yes,
)
from tests.ops.tcp_proxy import CuttableProxy

ORGS = ["RX1", "A81001", "RTH", "RYJ"]
# No request may wait longer than this for its answer, outage or not.
BOUND_S = 10.0
FINISH_S = 30.0


@dataclass(frozen=True)
class OutageFigures:
    outage_s: float
    requests: int
    created: int  # 201 answers (first answers and replays)
    unavailable: int  # 503 answers
    unexpected: int  # any other answer, 500s included
    without_retry_after: int
    no_answer: int  # connection refused or reset
    hung: int  # no answer within the bound
    max_latency_s: float
    unanswered: int
    recovery_s: float | None  # first 201 after the proxy was restored
    stored: Stored
    samples: list[str]

    def problems(self) -> list[str]:
        found = self.stored.problems()
        if self.unexpected:
            found.append(f"{self.unexpected} answers other than 201/503, e.g. {self.samples}")
        if self.without_retry_after:
            found.append(f"{self.without_retry_after} 503s without Retry-After")
        if self.no_answer or self.hung or self.max_latency_s > BOUND_S:
            found.append(
                f"{self.no_answer} dropped and {self.hung} hung requests "
                f"(slowest answer {self.max_latency_s:.1f} s)"
            )
        if self.unanswered:
            found.append(f"{self.unanswered} referrals never answered 201")
        if not self.unavailable:
            found.append("no 503 at all: the outage never reached the service")
        if self.recovery_s is None:
            found.append("no 201 after the database came back")
        return found

    def line(self) -> str:
        s = self.stored
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.2f} s"
        return (
            f"database outage: {self.outage_s:.1f} s, requests {self.requests}, "
            f"201 {self.created}, 503 {self.unavailable} (without Retry-After "
            f"{self.without_retry_after}), other {self.unexpected}, dropped {self.no_answer}, "
            f"hung {self.hung} (max {self.max_latency_s:.2f} s, bound {BOUND_S:.0f} s), "
            f"acknowledged {s.acknowledged}, stored {s.stored}, duplicates {s.duplicates}, "
            f"unanswered {self.unanswered}, recovery {recovery}, audit valid {yes(s.audit_valid)}"
        )


async def database_outage(
    database_url: str,
    work: Path,
    *,
    outage_s: float,
    before_s: float = 2.0,
    after_s: float = 2.0,
    clients: int = 12,
) -> OutageFigures:
    """Load for `before_s`, the database cut for `outage_s`, load for `after_s` after it is
    back. `database_url` is a migrated, empty database."""
    url = make_url(database_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    keys = payload.make_keypair(work)
    pool = callers(keys, ORGS)
    ledger = Ledger(retry_statuses=frozenset({503}))
    service = Service(work, fault_env(proxied, keys))
    stop = asyncio.Event()
    deadline = time.monotonic() + before_s + outage_s + after_s + FINISH_S
    run = f"db-{secrets.token_hex(4)}"
    restored_at = None
    left_running = 0
    try:
        await service.start()
        async with http_client(service.base, connections=clients, bound_s=BOUND_S) as http:
            tasks = [
                asyncio.create_task(
                    intake(http, pool, ledger, client=i, run=run, stop=stop, deadline=deadline)
                )
                for i in range(clients)
            ]
            try:
                await asyncio.sleep(before_s)
                await proxy.cut()
                await asyncio.sleep(outage_s)
                await proxy.start()
                restored_at = time.monotonic()
                await asyncio.sleep(after_s)
                stop.set()
                left_running = await finish(tasks, timeout=FINISH_S)
            finally:
                await cancel(tasks)
    finally:
        await service.stop()
        await proxy.cut()
    stored = await count_stored(database_url, keys, ledger)
    after = [t - restored_at for t in ledger.created_at if restored_at and t >= restored_at]
    return OutageFigures(
        outage_s=outage_s,
        requests=ledger.requests,
        created=ledger.statuses[201],
        unavailable=ledger.statuses[503],
        unexpected=ledger.unexpected(),
        without_retry_after=ledger.without_retry_after,
        no_answer=ledger.transport_errors,
        hung=ledger.timeouts,
        max_latency_s=ledger.max_latency_s,
        unanswered=ledger.unanswered + left_running,
        recovery_s=min(after) if after else None,
        stored=stored,
        samples=ledger.samples,
    )
