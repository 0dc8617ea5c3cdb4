"""Limits on callers (contract "Limits on callers"): counting, pure of HTTP.

Counters are fixed windows that open on a key's first hit (the `limits` library's fixed-window
strategy: one INCR per hit in Redis). In memory for one instance; in Redis when
REFERRAL_RATE_LIMIT_STORAGE_URL is set, so that every replica counts against the same budget.

If the store fails, the request is allowed (fails open): refusing referrals because a counter
is unreachable would refuse care. Each failure is counted and logged, without the key (an
organisation code or an address).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from service.core import metrics
from service.core.errors import DomainError
from service.core.settings import Settings

logger = logging.getLogger("service.rate_limits")

# A store that does not answer within this is treated as down: a limit check must never
# hold a request for long.
STORE_TIMEOUT_SECONDS = 0.5
# After a failure the store is left alone this long: under an outage every request would
# otherwise wait for the client's connection retries.
STORE_BACKOFF_SECONDS = 1.0


def parse_limit(value: str) -> RateLimitItem:
    """One limit such as `600/minute`; ValueError (naming nothing personal) otherwise."""
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1:
        raise ValueError(f"{value!r} is not one limit such as 600/minute")
    item = items[0]
    if item.amount < 1:
        raise ValueError(f"{value!r} must allow at least one request")
    return item


def storage_uri(url: str) -> str:
    """`redis://…` or `rediss://…` as the `limits` async scheme (`async+redis://…`)."""
    return url if url.startswith("async+") else f"async+{url}"


@dataclass(frozen=True, slots=True)
class Policy:
    """A named limit: `name` is what the RateLimit headers call it."""

    name: str
    item: RateLimitItem

    @property
    def quota(self) -> int:
        return self.item.amount

    @property
    def window_seconds(self) -> int:
        return self.item.get_expiry()


@dataclass(frozen=True, slots=True)
class Usage:
    """Where a key stands against a policy after (or without) counting a request."""

    policy: Policy
    allowed: bool
    remaining: int
    reset_seconds: int  # whole seconds until the window resets, at least 1


class RateLimited(DomainError):
    status = 429
    title = "Too Many Requests"
    type_slug = "rate-limited"

    def __init__(self, usage: Usage) -> None:
        super().__init__(
            f"Too many requests for the {usage.policy.name!r} limit "
            f"({usage.policy.quota} per {usage.policy.window_seconds} seconds); "
            f"retry after {usage.reset_seconds} seconds."
        )
        self.usage = usage
        self.headers = {"Retry-After": str(usage.reset_seconds)}


class RateLimits:
    """The three policies of the contract and the store their counters live in."""

    def __init__(self, settings: Settings) -> None:
        self.organisation = Policy("org", parse_limit(settings.rate_limits))
        self.submit = Policy("submit", parse_limit(settings.rate_limits_submit))
        self.anonymous = Policy("address", parse_limit(settings.rate_limits_anonymous))
        storage: Storage
        if settings.rate_limit_storage_url:
            storage = RedisStorage(
                storage_uri(settings.rate_limit_storage_url),
                wrap_exceptions=True,
                key_prefix=settings.rate_limit_key_prefix,
            )
        else:
            storage = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(storage)
        self._last_warning = -math.inf
        self._down_until = -math.inf

    async def hit(self, policy: Policy, key: str) -> Usage | None:
        """Count one request for `key`; None when the store failed (the request is allowed)."""
        if time.monotonic() < self._down_until:
            return None
        try:
            async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
                allowed = await self._limiter.hit(policy.item, policy.name, key)
                stats = await self._limiter.get_window_stats(policy.item, policy.name, key)
        except (StorageError, OSError, TimeoutError) as exc:
            self._store_failed(exc)
            return None
        return Usage(policy, allowed, max(stats.remaining, 0), _seconds_until(stats.reset_time))

    async def exhausted(self, policy: Policy, key: str) -> Usage | None:
        """The usage if `key` has nothing left under `policy`, without counting; else None."""
        if time.monotonic() < self._down_until:
            return None
        try:
            async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
                if await self._limiter.test(policy.item, policy.name, key):
                    return None
                stats = await self._limiter.get_window_stats(policy.item, policy.name, key)
        except (StorageError, OSError, TimeoutError) as exc:
            self._store_failed(exc)
            return None
        return Usage(policy, False, 0, _seconds_until(stats.reset_time))

    def _store_failed(self, exc: BaseException) -> None:
        metrics.RATE_LIMIT_STORE_ERRORS.inc()
        now = time.monotonic()
        self._down_until = now + STORE_BACKOFF_SECONDS
        # Once a minute at most: an outage under load would otherwise log every request.
        if now - self._last_warning >= 60:
            self._last_warning = now
            logger.warning(
                "rate limit store unavailable; requests are allowed without limits",
                extra={"error": type(exc).__name__},
            )


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))
