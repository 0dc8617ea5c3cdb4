"""`kill -9` of the whole server under concurrent intake, again and again.

Clients submit new referrals without pause; a request cut off by the kill is sent again with
the same Idempotency-Key and body once the server is back, until it is answered. Afterwards
every 201 must be stored under its key with the id the client was given, no key may have given
two referrals, no referral may be without its key, and the audit trail must verify.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

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

ORGS = ["RX1", "A81001", "RTH", "RYJ"]
# The longest a request may wait for its answer: a kill answers in-flight requests at once
# (connection reset), so this only bounds a run that went wrong.
BOUND_S = 30.0
# How long clients get to finish the referral in hand once the load stops.
FINISH_S = 30.0


@dataclass(frozen=True)
class Kill9Figures:
    rounds: int
    killed_processes: int
    requests: int
    retries: int
    conflicts_409: int
    unexpected: int
    unanswered: int
    stored: Stored
    samples: list[str]

    def problems(self) -> list[str]:
        found = self.stored.problems()
        if self.unexpected:
            found.append(f"{self.unexpected} unexpected answers, e.g. {self.samples}")
        if self.unanswered:
            found.append(f"{self.unanswered} referrals never answered")
        if not self.stored.acknowledged:
            found.append("nothing was acknowledged: the load never ran")
        return found

    def line(self) -> str:
        s = self.stored
        return (
            f"kill-9: rounds {self.rounds}, processes killed {self.killed_processes}, "
            f"requests {self.requests}, acknowledged {s.acknowledged}, stored {s.stored}, "
            f"duplicates {s.duplicates}, without key {s.orphans}, retries {self.retries} "
            f"(409 in flight {self.conflicts_409}), unanswered {self.unanswered}, "
            f"unexpected {self.unexpected}, audit valid {yes(s.audit_valid)}"
        )


async def kill9(
    database_url: str,
    work: Path,
    *,
    rounds: int,
    clients: int = 12,
    load_s: tuple[float, float] = (0.5, 1.5),
    seed: int | None = None,
    budget_s: float = 240.0,
) -> Kill9Figures:
    """`rounds` times: load for a random while within `load_s`, SIGKILL the server's whole
    process group, start it again. `database_url` is a migrated, empty database."""
    rng = random.Random(seed)
    deadline = time.monotonic() + budget_s
    keys = payload.make_keypair(work)
    pool = callers(keys, ORGS)
    # 409: the same key still in flight, which a retry can meet while PostgreSQL has not yet
    # noticed that a killed worker's connection is gone.
    ledger = Ledger(retry_statuses=frozenset({409}))
    service = Service(work, fault_env(database_url, keys))
    stop = asyncio.Event()
    killed = 0
    left_running = 0
    run = f"k9-{secrets.token_hex(4)}"
    await service.start()
    async with http_client(service.base, connections=clients, bound_s=BOUND_S) as http:
        tasks = [
            asyncio.create_task(
                intake(
                    http,
                    pool,
                    ledger,
                    client=i,
                    run=run,
                    stop=stop,
                    deadline=deadline,
                    up=service.up,
                )
            )
            for i in range(clients)
        ]
        try:
            for _ in range(rounds):
                await asyncio.sleep(rng.uniform(*load_s))
                killed += await service.kill()
                await service.start()
            await asyncio.sleep(load_s[1])  # the last server takes load as well
            stop.set()
            left_running = await finish(tasks, timeout=FINISH_S)
        finally:
            await cancel(tasks)
            await service.stop()
    stored = await count_stored(database_url, keys, ledger)
    return Kill9Figures(
        rounds=rounds,
        killed_processes=killed,
        requests=ledger.requests,
        retries=ledger.retries,
        conflicts_409=ledger.statuses[409],
        unexpected=ledger.unexpected() + ledger.without_retry_after,
        unanswered=ledger.unanswered + left_running,
        stored=stored,
        samples=ledger.samples,
    )
