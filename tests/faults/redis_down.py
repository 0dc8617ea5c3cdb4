"""The rate-limit store (Redis) unreachable under load, through a TCP proxy the run controls
(tests/ops/tcp_proxy.py): the machine's Redis is never stopped.

The server counts in Redis (REFERRAL_RATE_LIMIT_STORAGE_URL through the proxy, a key prefix
of this run's own). Load comes from many organisations, each well under its limit; a probe
organisation spends its whole budget first, so the limit is seen to hold. With the store cut,
limits fail open: the load is never refused and the probe organisation, over its limit, is
served too, while `referral_rate_limit_store_errors_total` (metrics port) counts the failures.
When the store is back the limits apply again: the exhausted organisation is refused again,
and a fresh one gets exactly its limit.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import coredis
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import payload, servers
from tests.faults.harness import (
    CHECK,
    Caller,
    Service,
    callers,
    cancel,
    fault_env,
    finish,
    http_client,
    yes,
)
from tests.ops.tcp_proxy import CuttableProxy

REDIS = ("127.0.0.1", 6379)
STORE_ERRORS = "referral_rate_limit_store_errors_total"
BOUND_S = 10.0
# The limits' store is left alone for a second after a failure (service/core/rate_limits.py);
# after the restore, limits must hold again well within this.
BACK_WITHIN_S = 10.0
# The exhausted organisation refused this many times in a row: every worker counts again.
REFUSED_IN_A_ROW = 6


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    no_answer: int = 0
    samples: list[str] = field(default_factory=list)

    def bad(self, allowed: frozenset[int]) -> int:
        return self.no_answer + sum(n for s, n in self.statuses.items() if s not in allowed)


@dataclass(frozen=True)
class RedisFigures:
    outage_s: float
    limit: int
    load_requests: int
    load_during_outage: int
    load_refused: int  # 429s for organisations under their limit: must be none
    failed: int  # 5xx, other answers or no answer, for anyone
    probe_served_during_outage: int
    probe_sent_during_outage: int
    store_errors: float
    enforced_before: bool
    enforced_after: bool
    back_after_s: float | None
    samples: list[str]

    def problems(self) -> list[str]:
        found = []
        if self.load_refused:
            found.append(f"{self.load_refused} requests under the limit refused (429)")
        if self.failed:
            found.append(f"{self.failed} requests failed, e.g. {self.samples}")
        if not self.load_during_outage:
            found.append("no load while the store was down")
        if (
            not self.probe_sent_during_outage
            or self.probe_served_during_outage != self.probe_sent_during_outage
        ):
            found.append(
                f"over the limit with the store down: {self.probe_served_during_outage} of "
                f"{self.probe_sent_during_outage} served (limits must fail open)"
            )
        if self.store_errors < 1:
            found.append(f"{STORE_ERRORS} did not count the store's failures")
        if not self.enforced_before:
            found.append("the limit did not hold before the outage")
        if not self.enforced_after:
            found.append("the limit did not hold again after the store came back")
        return found

    def line(self) -> str:
        back = "never" if self.back_after_s is None else f"{self.back_after_s:.2f} s"
        return (
            f"redis down: {self.outage_s:.1f} s, limit {self.limit}/minute per organisation, "
            f"load requests {self.load_requests} ({self.load_during_outage} during the outage), "
            f"refused under the limit {self.load_refused}, failed {self.failed}, "
            f"over-limit organisation served while down {self.probe_served_during_outage}/"
            f"{self.probe_sent_during_outage}, store errors counted {self.store_errors:.0f}, "
            f"limit held before {yes(self.enforced_before)}, after {yes(self.enforced_after)} "
            f"(back {back} after the restore)"
        )


async def _check(http: httpx.AsyncClient, caller: Caller, body: bytes, tally: Tally) -> int:
    """One eligibility check (counted against the organisation's limit only); its status, or
    0 for no answer."""
    headers = {"Authorization": f"Bearer {caller.token}", "Content-Type": "application/json"}
    try:
        response = await http.post(CHECK, content=body, headers=headers)
    except httpx.TransportError:
        tally.no_answer += 1
        return 0
    tally.statuses[response.status_code] += 1
    if response.status_code not in (200, 429) and len(tally.samples) < 3:
        tally.samples.append(f"{response.status_code} {response.text[:200]}")
    return response.status_code


def _refused_properly(response: httpx.Response) -> bool:
    return (
        response.status_code == 429
        and int(response.headers.get("retry-after", "0")) >= 1
        and '"org";r=0;' in response.headers.get("ratelimit", "")
        and "ratelimit-policy" in response.headers
    )


async def _spend(
    http: httpx.AsyncClient, caller: Caller, body: bytes, limit: int, tally: Tally
) -> bool:
    """Spend an organisation's whole budget: `limit` answers 200, then a proper 429."""
    for _ in range(limit):
        if await _check(http, caller, body, tally) != 200:
            return False
    headers = {"Authorization": f"Bearer {caller.token}", "Content-Type": "application/json"}
    refused = await http.post(CHECK, content=body, headers=headers)
    tally.statuses[refused.status_code] += 1
    return _refused_properly(refused)


async def _store_errors(http: httpx.AsyncClient, metrics_url: str) -> float:
    text = (await http.get(metrics_url)).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == STORE_ERRORS
    )


async def redis_down(
    database_url: str,
    work: Path,
    *,
    outage_s: float,
    limit: int = 100,
    load_orgs: int = 40,
    clients: int = 6,
) -> RedisFigures:
    """`database_url` is a migrated database (the checks write audit events)."""
    proxy = CuttableProxy(*REDIS)
    await proxy.start()
    prefix = f"faults-{secrets.token_hex(6)}"
    metrics_port = servers.free_port()
    keys = payload.make_keypair(work)
    env = fault_env(
        database_url,
        keys,
        REFERRAL_RATE_LIMITS=f"{limit}/minute",
        REFERRAL_RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{proxy.port}/0",
        REFERRAL_RATE_LIMIT_KEY_PREFIX=prefix,
        REFERRAL_METRICS_PORT=str(metrics_port),
    )
    # Every organisation's window opens at its first request and lasts a minute; the whole
    # scenario takes well under that, so no window resets half-way.
    load = callers(keys, [f"LD{n:02d}" for n in range(load_orgs)])
    exhausted, fresh = callers(keys, ["PROBE1", "PROBE2"])
    budget = {caller.org: limit * 4 // 5 for caller in load}  # each stays under its limit
    body = payload.encode(payload.referral_body(0))
    service = Service(work, env, name="redis")
    load_tally, probe_tally = Tally(), Tally()
    stop, down = asyncio.Event(), asyncio.Event()
    during = 0

    async def load_client(i: int) -> None:
        nonlocal during
        n = i
        while not stop.is_set():
            spare = [c for c in load if budget[c.org] > 0]
            if not spare:
                await asyncio.sleep(0.05)
                continue
            caller = spare[n % len(spare)]
            n += 1
            budget[caller.org] -= 1
            await _check(http, caller, body, load_tally)
            if down.is_set():
                during += 1

    try:
        await service.start()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        async with http_client(service.base, connections=clients + 1, bound_s=BOUND_S) as http:
            tasks = [asyncio.create_task(load_client(i)) for i in range(clients)]
            try:
                enforced_before = await _spend(http, exhausted, body, limit, probe_tally)
                errors_before = await _store_errors(http, metrics_url)

                await proxy.cut()
                down.set()
                served = sent = 0
                until = time.monotonic() + outage_s
                while time.monotonic() < until:
                    sent += 1
                    served += await _check(http, exhausted, body, probe_tally) == 200
                    await asyncio.sleep(0.2)
                store_errors = await _store_errors(http, metrics_url) - errors_before

                await proxy.start()
                down.clear()
                restored_at = time.monotonic()
                back_after_s = None
                in_a_row = 0
                while time.monotonic() < restored_at + BACK_WITHIN_S:
                    status = await _check(http, exhausted, body, probe_tally)
                    in_a_row = in_a_row + 1 if status == 429 else 0
                    if in_a_row == 1:
                        back_after_s = time.monotonic() - restored_at
                    if in_a_row == REFUSED_IN_A_ROW:
                        break
                    await asyncio.sleep(0.1)
                else:
                    back_after_s = None
                enforced_after = back_after_s is not None and await _spend(
                    http, fresh, body, limit, probe_tally
                )
                stop.set()
                await finish(tasks, timeout=BOUND_S)
            finally:
                await cancel(tasks)
    finally:
        await service.stop()
        await proxy.cut()
        redis = coredis.Redis(host=REDIS[0], port=REDIS[1])
        stale = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if stale:
            await redis.delete(stale)
    return RedisFigures(
        outage_s=outage_s,
        limit=limit,
        load_requests=sum(load_tally.statuses.values()) + load_tally.no_answer,
        load_during_outage=during,
        load_refused=load_tally.statuses[429],
        failed=load_tally.bad(frozenset({200, 429})) + probe_tally.bad(frozenset({200, 429})),
        probe_served_during_outage=served,
        probe_sent_during_outage=sent,
        store_errors=store_errors,
        enforced_before=enforced_before,
        enforced_after=enforced_after,
        back_after_s=back_after_s,
        samples=load_tally.samples + probe_tally.samples,
    )
