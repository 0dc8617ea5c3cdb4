"""The dispatcher: claims due deliveries, sends them and records each result.

One runs inside each service process by default, and `referral-service worker` runs one on its
own. Any number may share one PostgreSQL: claims skip rows another dispatcher has locked, and a
claim is a lease, so a dispatcher that dies mid-delivery only delays that delivery until the
lease runs out. SQLite has one dispatcher. Each claim and each result is its own unit of work.
A dispatcher sleeps until the next poll or until a commit in its process writes deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from service.core import metrics
from service.core.settings import Settings
from service.core.unit_of_work import UnitOfWork
from service.notifications import delivery, outbox, repository, sealing, signing
from service.notifications.safety import UrlPolicy
from service.notifications.sealing import SecretBox, SecretUnavailable
from service.notifications.subscriptions import EVENT_TYPES

logger = logging.getLogger("service.notifications")

# After the first failure, then each next one (notifications.md); then the delivery is failed.
RETRY_SCHEDULE: tuple[float, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)
JITTER = 0.2


class Dispatcher:
    def __init__(
        self,
        units: UnitOfWork,
        policy: UrlPolicy,
        *,
        schedule: Sequence[float] = RETRY_SCHEDULE,
        timeout: float = 15.0,
        lease: timedelta = timedelta(seconds=60),
        poll_seconds: float = 1.0,
        batch_size: int = 20,
        owner: str | None = None,
        retention: timedelta = timedelta(days=30),
        box: SecretBox | None = None,
        jitter: Callable[[], float] = lambda: random.uniform(1 - JITTER, 1 + JITTER),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.units = units
        self.policy = policy
        self.schedule = tuple(schedule)
        self.timeout = timeout
        self.lease = lease
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.owner = owner or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self.jitter = jitter
        self.clock = clock
        self.retention = retention
        self.box = box or SecretBox(())
        self._next_purge = clock()
        self._wake = asyncio.Event()
        self._client = delivery.new_client(timeout)
        self._stopping = False
        self._attempts: set[asyncio.Task[delivery.Result]] = set()

    def stop(self) -> None:
        """Stop soon (SIGTERM, the app's shutdown): cut the HTTP attempts in flight short and
        let `run()` return once the batch has let go of the database.

        Why not cancel `run()`: a cancellation that lands in the middle of a database call
        leaves the driver to abandon the connection, and aiosqlite's close can then wait for
        ever (the app's shutdown hung with it). Only the attempts, which touch no database, are
        cancelled; what they held is handed back by `run()` on its way out."""
        self._stopping = True
        self._wake.set()
        for attempt in self._attempts:
            attempt.cancel()

    async def run(self) -> None:
        """Deliver until `stop()` (or, as a last resort, cancelled)."""
        outbox.register(self._wake)
        try:
            while not self._stopping:
                try:
                    sent = await self.run_once()
                    await self.observe_backlog()
                    if self.clock() >= self._next_purge:
                        await self.purge()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The database may be briefly unavailable: keep going, say so.
                    logger.exception("webhook dispatch failed; retrying at the next poll")
                    sent = 0
                if sent or self._stopping:
                    continue  # there may be more due at once (or the loop is to end)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            outbox.unregister(self._wake)
            await self._release()
            await self._client.aclose()

    async def _release(self) -> None:
        """Stopping (SIGTERM, app shutdown): hand back what is in flight instead of leaving it
        to wait for the lease to run out. A dispatcher that is killed cannot: its lease can."""
        try:
            async with self.units.begin() as session:
                released = await repository.release(await session.connection(), owner=self.owner)
        except Exception:
            logger.exception("webhook deliveries not released; their leases will run out")
            return
        if released:
            logger.info("webhook deliveries released", extra={"count": released})

    async def shut_down(self, task: asyncio.Task[None], *, grace: float = 10.0) -> None:
        """Stop `task` (this dispatcher's `run()`) and wait for it; cancel it only if it has
        not returned within `grace` seconds (a database that no longer answers)."""
        self.stop()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            logger.warning("webhook dispatcher did not stop in time; cancelling it")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and send them concurrently; how many were."""
        async with self.units.begin() as session:
            db = await session.connection()
            claimed = await repository.claim(
                db,
                owner=self.owner,
                now=self.clock(),
                lease=self.lease,
                limit=self.batch_size,
            )
        if claimed:
            await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    async def _deliver(self, claimed: repository.Claimed) -> None:
        if self._stopping:
            return  # claimed just as stop() came: handed back unsent
        body = signing.body(claimed.event_type, claimed.created_at, claimed.data)
        try:
            secrets = tuple(self.box.open(stored) for stored in claimed.secrets)
        except SecretUnavailable:
            # Keys removed or wrong: nothing can be signed, so nothing is sent; retried like a
            # failed attempt (the key may be put back), and the log tells the deployer.
            logger.error(
                "webhook secret cannot be opened; check REFERRAL_WEBHOOK_SECRET_KEYS",
                extra={"event_id": claimed.event_id, "subscription_id": claimed.subscription_id},
            )
            result = delivery.Result(ok=False, status_code=None, error="secret_unavailable")
        else:
            sent = await self._attempt(claimed, secrets, body)
            if sent is None:
                return  # stop() cut it short
            result = sent
        outcome = "success" if result.ok else (result.error or "failure")
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        logger.info(
            "webhook attempt",
            extra={
                "event_id": claimed.event_id,
                "subscription_id": claimed.subscription_id,
                "attempt": claimed.attempt,
                "status_code": result.status_code,
                "result": outcome,
                "duration_ms": round(result.duration * 1000, 1),
            },
        )
        await self._record(claimed, result)

    async def _attempt(
        self, claimed: repository.Claimed, secrets: tuple[str, ...], body: bytes
    ) -> delivery.Result | None:
        """One HTTP attempt; None if stop() cut it short."""
        attempt = asyncio.create_task(
            delivery.attempt(
                self._client,
                self.policy,
                url=claimed.url,
                message_id=claimed.event_id,
                secrets=secrets,
                body=body,
                timeout=self.timeout,
            )
        )
        self._attempts.add(attempt)
        try:
            result = await attempt
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this task itself is cancelled, not just its attempt
            # stop() cut it short: unrecorded, it is handed back as the dispatcher stops.
            return None
        except Exception as exc:
            # A failed attempt like any other: unrecorded, the delivery would be claimed again
            # at each lease's end for ever, never `failed`, holding its referral's later events.
            # The class only: the message may quote the URL, whose query may hold a token.
            logger.error(
                "webhook attempt raised",
                extra={
                    "event_id": claimed.event_id,
                    "subscription_id": claimed.subscription_id,
                    "error": type(exc).__name__,
                },
            )
            result = delivery.Result(ok=False, status_code=None, error="internal_error")
        finally:
            self._attempts.discard(attempt)
        return result

    def _next_attempt(self, attempt: int, retry_after: float | None, now: datetime) -> datetime:
        delay = self.schedule[attempt - 1] * self.jitter()
        if retry_after is not None:
            delay = max(delay, retry_after)  # never sooner than the receiver asked
        return now + timedelta(seconds=delay)

    async def _record(self, claimed: repository.Claimed, result: delivery.Result) -> None:
        now = self.clock()
        status, next_at = repository.SUCCEEDED, None
        if not result.ok:
            if result.gone or claimed.attempt > len(self.schedule):
                status = repository.FAILED
            else:
                status = repository.PENDING
                next_at = self._next_attempt(claimed.attempt, result.retry_after, now)
        async with self.units.begin() as session:
            db = await session.connection()
            if status == repository.PENDING and await repository.lock_disabled(
                db, claimed.subscription_id
            ):
                # A 410 to another delivery in flight disabled it: nothing claims it now.
                status, next_at = repository.FAILED, None
            kept = await repository.record(
                db,
                delivery_id=claimed.id,
                owner=self.owner,
                now=now,
                status=status,
                status_code=result.status_code,
                error=result.error,
                next_attempt_at=next_at,
            )
            if result.gone and kept:
                await repository.disable_subscription(
                    db, subscription_id=claimed.subscription_id, reason="gone", now=now
                )
        if not kept:
            logger.warning(
                "webhook lease lost before the result was recorded",
                extra={"event_id": claimed.event_id, "subscription_id": claimed.subscription_id},
            )
        elif status == repository.FAILED:
            logger.warning(
                "webhook delivery failed for good",
                extra={
                    "event_id": claimed.event_id,
                    "event_type": claimed.event_type,
                    "subscription_id": claimed.subscription_id,
                },
            )

    async def purge(self) -> int:
        """Forget finished deliveries older than the retention (at most hourly from run())."""
        now = self.clock()
        self._next_purge = now + timedelta(hours=1)
        async with self.units.begin() as session:
            return await repository.purge(
                await session.connection(), finished_before=now - self.retention
            )

    async def observe_backlog(self) -> None:
        """Set the outbox depth and oldest-pending-age gauges from the database."""
        async with self.units.begin() as session:
            backlog = await repository.backlog(await session.connection())
        metrics.WEBHOOK_OUTBOX_DEPTH.set(backlog.depth)
        for event_type in EVENT_TYPES:
            metrics.WEBHOOK_FAILED.labels(event_type).set(backlog.failed.get(event_type, 0))
        age = 0.0 if backlog.oldest is None else (self.clock() - backlog.oldest).total_seconds()
        metrics.WEBHOOK_OLDEST_PENDING.set(max(age, 0.0))


def from_settings(
    settings: Settings, units: UnitOfWork, *, policy: UrlPolicy | None = None
) -> Dispatcher:
    """The dispatcher the settings describe (the API's lifespan and `worker` both build it)."""
    if settings.webhook_allow_insecure:
        logger.warning(
            "REFERRAL_WEBHOOK_ALLOW_INSECURE=true: webhooks may go to http:// and private "
            "addresses; for tests and development only"
        )
    return Dispatcher(
        units,
        policy or url_policy(settings),
        lease=timedelta(seconds=settings.webhook_lease_seconds),
        poll_seconds=settings.webhook_poll_seconds,
        batch_size=settings.webhook_batch_size,
        retention=timedelta(days=settings.webhook_retention_days),
        box=sealing.from_settings(settings),
    )


def url_policy(settings: Settings) -> UrlPolicy:
    return UrlPolicy(allow_insecure=settings.webhook_allow_insecure)
