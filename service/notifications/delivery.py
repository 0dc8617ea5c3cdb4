"""One delivery attempt over HTTP: signed, pinned to the checked address, bounded in time and
size. Only a 2xx within the timeout is a success; a redirect is a failure, never followed."""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from service.notifications import signing
from service.notifications.safety import Target, UnsafeUrl, UrlPolicy

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "referral-service-webhooks/1"
# The longest a receiver may push a retry back with Retry-After: the schedule's last step.
MAX_RETRY_AFTER_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    status_code: int | None
    # An error class for the log and the deliveries list: never a body or a URL.
    error: str | None
    retry_after: float | None = None  # seconds, from a 429 or 503
    gone: bool = False  # 410: the subscription is disabled
    duration: float = 0.0


def new_client(timeout: float) -> httpx.AsyncClient:
    # No proxies or certificates from the environment; redirects are answers, not hops.
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        headers={"user-agent": USER_AGENT},
    )


def _pinned_url(target: Target) -> httpx.URL:
    return httpx.URL(target.url).copy_with(host=target.address)


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


async def attempt(
    client: httpx.AsyncClient,
    policy: UrlPolicy,
    *,
    url: str,
    message_id: str,
    secrets: tuple[str, ...],
    body: bytes,
    timeout: float,
) -> Result:
    started = time.perf_counter()
    # One deadline for the whole attempt: resolving, connecting, sending and reading.
    deadline = asyncio.get_running_loop().time() + timeout

    def done(**fields: object) -> Result:
        return Result(duration=time.perf_counter() - started, **fields)  # type: ignore[arg-type]

    try:
        # Bounded too: a slow resolver must not hold the attempt past its timeout.
        async with asyncio.timeout_at(deadline):
            target = await policy.resolve(url)
    except UnsafeUrl:
        return done(ok=False, status_code=None, error="address_refused")
    except TimeoutError:
        return done(ok=False, status_code=None, error="timeout")
    now = datetime.now(UTC)
    # The connection goes to the checked address; the URL's host name stays in the Host
    # header and in TLS (SNI and certificate verification), as if we had connected by name.
    port = httpx.URL(url).port
    host = target.host if ":" not in target.host else f"[{target.host}]"
    headers = {
        "content-type": "application/json",
        "host": host if port is None else f"{host}:{port}",
        **signing.headers(secrets, message_id, int(now.timestamp()), body),
    }
    try:
        async with asyncio.timeout_at(deadline):
            request = client.build_request(
                "POST",
                _pinned_url(target),
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.host},
            )
            response = await client.send(request, stream=True)
            try:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)  # read to let the connection be reused, never kept
                    if read >= MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
    except TimeoutError:
        return done(ok=False, status_code=None, error="timeout")
    except httpx.TimeoutException:
        return done(ok=False, status_code=None, error="timeout")
    except httpx.ConnectError:
        return done(ok=False, status_code=None, error="connection_error")
    except httpx.HTTPError:
        return done(ok=False, status_code=None, error="protocol_error")
    code = response.status_code
    if 200 <= code < 300:
        return done(ok=True, status_code=code, error=None)
    if 300 <= code < 400:
        return done(ok=False, status_code=code, error="redirect")
    retry_after = (
        _retry_after(response.headers.get("retry-after"), now) if code in (429, 503) else None
    )
    return done(
        ok=False, status_code=code, error="http_status", retry_after=retry_after, gone=code == 410
    )
