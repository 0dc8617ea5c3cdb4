"""`python -m tests.faults` (`make faults`): every fault scenario in its long form, each on a
fresh database of its own, one line of figures each; exit 1 on any loss or failed check.

PostgreSQL: REFERRAL_TEST_DATABASE_URL if set (as CI sets it), else the local server at
127.0.0.1:5432. Redis: 127.0.0.1:6379. Neither is ever stopped: outages go through TCP
proxies the run controls. Each scenario has a time budget; the whole run stays under five
minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from tests.databases import PG_URL_VARIABLE, PostgresDatabases, postgres_url
from tests.faults.kill9 import kill9
from tests.faults.outage import database_outage
from tests.faults.redis_down import redis_down

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


class Figures(Protocol):
    def line(self) -> str: ...
    def problems(self) -> list[str]: ...


Scenario = Callable[[str, Path], Awaitable[Figures]]


def _scenarios(args: argparse.Namespace) -> list[tuple[str, float, Scenario]]:
    """(name, budget in seconds, scenario)."""
    return [
        ("kill-9", 170.0, lambda url, work: kill9(url, work, rounds=args.rounds, budget_s=150.0)),
        (
            "database outage",
            50.0,
            lambda url, work: database_outage(url, work, outage_s=args.outage),
        ),
        ("redis down", 50.0, lambda url, work: redis_down(url, work, outage_s=args.redis_outage)),
    ]


def _run(databases: PostgresDatabases, name: str, budget: float, scenario: Scenario) -> bool:
    url = asyncio.run(databases.new())
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="faults-") as work:
            try:
                figures = asyncio.run(asyncio.wait_for(scenario(url, Path(work)), budget))
            except Exception as exc:  # a scenario that could not run is a failure, said so
                print(f"{name}: FAILED to run: {type(exc).__name__}: {exc}", flush=True)
                return False
    finally:
        asyncio.run(databases.drop(url))
    problems = figures.problems()
    print(f"{figures.line()} [{time.monotonic() - started:.0f} s]", flush=True)
    for problem in problems:
        print(f"  FAILED: {problem}", flush=True)
    return not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="kill -9 rounds (default 10)")
    parser.add_argument(
        "--outage", type=float, default=5.0, help="database outage, seconds (default 5)"
    )
    parser.add_argument(
        "--redis-outage", type=float, default=5.0, help="Redis outage, seconds (default 5)"
    )
    args = parser.parse_args(argv)
    url = postgres_url() or DEFAULT_URL
    print(
        f"fault suite on {url.rsplit('@', 1)[-1]} "
        f"({PG_URL_VARIABLE} {'set' if postgres_url() else 'not set: the local server'})",
        flush=True,
    )
    databases = PostgresDatabases(url)
    try:
        results = [_run(databases, *scenario) for scenario in _scenarios(args)]
    finally:
        databases.close()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
