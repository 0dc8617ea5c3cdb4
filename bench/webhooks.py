"""`python -m bench.webhooks [--events N]`: how fast the outbox drains to a local receiver.

Two figures, on PostgreSQL when one answers on 127.0.0.1:5432 (a database of its own, dropped
at the end), else SQLite:

- throughput: N events committed first, then one dispatcher started: events delivered per
  second until the receiver has all of them;
- latency: events committed one at a time (about 50 a second) with the dispatcher running:
  time from each commit to its arrival at the receiver (p50, p99, max).

The receiver is a threaded http.server on 127.0.0.1 answering 204, in this process, so both
clocks are the same monotonic clock. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from bench.db import _with_database, pg_dsn
from service.core import events
from service.core.context import Caller, RequestContext
from service.core.database import make_sessionmaker
from service.core.migrate import upgrade
from service.core.unit_of_work import UnitOfWork
from service.notifications import outbox, subscriptions
from service.notifications.dispatcher import Dispatcher
from service.notifications.safety import UrlPolicy
from service.notifications.sealing import SecretBox
from tests.webhooks import receiver

TEAM = RequestContext(Caller("bench", "PIT01", frozenset()), request_id="bench")
POLICY = UrlPolicy(allow_insecure=True)


async def _database() -> tuple[str, Any]:
    dsn = pg_dsn()
    try:
        admin = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        path = Path(tempfile.mkdtemp(prefix="bench-webhooks-")) / "bench.db"
        return f"sqlite+aiosqlite:///{path}", None
    name = f"bench_webhooks_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    url = _with_database(dsn, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    return url, drop


def _event(n: int) -> events.ReferralEvent:
    rid = f"bench-{n}"
    return events.ReferralEvent(
        events.REFERRAL_STATUS_CHANGED,
        rid,
        "RX1",
        True,
        False,
        datetime.now(UTC),
        {"id": rid, "version": 2},
    )


async def _publish(units: UnitOfWork, n: int) -> float:
    async with units.begin() as session:
        await events.publish(session, [_event(n)])
    return time.monotonic()


async def run(count: int) -> dict[str, Any]:
    url, drop = await _database()
    engine = create_async_engine(url, pool_size=10) if drop else create_async_engine(url)
    try:
        await upgrade(engine)
        units = UnitOfWork(make_sessionmaker(engine), listeners=(outbox.write,))
        with receiver() as hook:
            async with units.begin() as session:
                await subscriptions.create(
                    session=session,
                    ctx=TEAM,
                    url=hook.url,
                    events=[events.REFERRAL_STATUS_CHANGED],
                    description=None,
                    team=True,
                    policy=POLICY,
                    box=SecretBox(()),
                    now=datetime.now(UTC),
                    max_per_org=10,
                )
            for n in range(count):
                await _publish(units, n)
            dispatcher = Dispatcher(units, POLICY, poll_seconds=0.2, batch_size=50)
            started = time.monotonic()
            task = asyncio.create_task(dispatcher.run())
            await hook.wait_for(count, timeout=600)
            drained = time.monotonic() - started

            committed: dict[str, float] = {}
            for n in range(count, count + min(count, 500)):
                committed[f"bench-{n}"] = await _publish(units, n)
                await asyncio.sleep(0.02)
            arrived = await hook.wait_for(count + len(committed), timeout=600)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        lags = sorted(
            (r.at - committed[r.json()["data"]["id"]]) * 1000
            for r in arrived
            if r.json()["data"]["id"] in committed
        )
        return {
            "database": "postgresql" if drop else "sqlite",
            "events": count,
            "throughput_events_per_s": round(count / drained, 1),
            "latency_events": len(lags),
            "commit_to_delivery_ms": {
                "p50": round(statistics.median(lags), 1),
                "p99": round(lags[int(len(lags) * 0.99) - 1], 1),
                "max": round(lags[-1], 1),
            },
        }
    finally:
        await engine.dispose()
        if drop:
            await drop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.events)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
