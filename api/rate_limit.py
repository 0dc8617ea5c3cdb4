"""Limits on callers, at the HTTP edge: who is counted, and the RateLimit headers.

A request with a valid token counts against its organisation (and, for a submission, against
the organisation's submission limit), never against its address: a partner whose systems sit
behind one address is not starved by its own valid traffic. A request without a valid token
(none, forged, expired, or a public /v1 route) counts against its client address. Its token
is only verified while the address has budget left: once it is spent, the request is refused
before verification, so forged tokens cannot buy RSA verifications beyond the anonymous limit.
Concurrent requests may each pass the budget check before any is counted, so the overshoot is
bounded by the number in flight, not by the attacker's patience.

Health, readiness, metrics, docs and /openapi.json are outside /v1 and never limited. The
client address is the ASGI client: behind an ingress, run uvicorn with --proxy-headers and
--forwarded-allow-ips naming the ingress so that it is the caller's, not the ingress's.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response
from service.core.rate_limits import RateLimited, RateLimits, Usage

LIMITED_PREFIX = "/v1/"
# The operations that count against REFERRAL_RATE_LIMITS_SUBMIT as well: (method, template).
SUBMISSIONS = frozenset({("POST", "/v1/referrals")})
_STATE_KEY = "rate_limit_usage"


def rate_limits_of(scope: Scope) -> RateLimits:
    limits: RateLimits = scope["app"].state.rate_limits
    return limits


def record(scope: Scope, usage: Usage | None) -> None:
    """Remember a policy's usage for the response's RateLimit headers."""
    if usage is not None:
        scope.setdefault("state", {}).setdefault(_STATE_KEY, []).append(usage)


async def limit_organisation(request: Request, organisation: str) -> None:
    """Count a verified caller's request against its organisation; 429 when over."""
    limits = rate_limits_of(request.scope)
    route = request.scope.get("route")
    policies = [limits.organisation]
    if (request.method, getattr(route, "path", None)) in SUBMISSIONS:
        policies.append(limits.submit)
    for policy in policies:
        usage = await limits.hit(policy, organisation)
        record(request.scope, usage)
        if usage is not None and not usage.allowed:
            raise RateLimited(usage)


def rate_limit_headers(usages: list[Usage]) -> dict[str, str]:
    """draft-ietf-httpapi-ratelimit-headers: one list member per policy that applied."""
    return {
        "RateLimit-Policy": ", ".join(
            f'"{u.policy.name}";q={u.policy.quota};w={u.policy.window_seconds}' for u in usages
        ),
        "RateLimit": ", ".join(
            f'"{u.policy.name}";r={u.remaining};t={u.reset_seconds}' for u in usages
        ),
    }


class RateLimitMiddleware:
    """The per-address limit for requests without a valid token, and the headers on every
    response of a limited route. Installed inside RequestContextMiddleware, so a 429 carries
    the request id like any other problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        limits = rate_limits_of(scope)
        address = _client_address(scope)
        spent = await limits.exhausted(limits.anonymous, address)
        if spent is not None:
            # The address's budget for requests without a valid token is spent. A valid
            # token would not count here, but telling one from a forgery costs the RSA
            # verification this limit exists to ration: refuse before verifying.
            await self._refuse(scope, receive, send, spent)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state", {})
                if state.get("ctx") is None:
                    # No verified caller: this request counts against its address.
                    record(scope, await limits.hit(limits.anonymous, address))
                usages: list[Usage] = state.get(_STATE_KEY, [])
                if usages:
                    headers = MutableHeaders(scope=message)
                    for name, value in rate_limit_headers(usages).items():
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, usage: Usage) -> None:
        error = RateLimited(usage)
        response = problem_response(
            Request(scope),
            status=error.status,
            title=error.title,
            slug=error.type_slug,
            detail=error.detail,
            headers={**error.headers, **rate_limit_headers([usage])},
        )
        await response(scope, receive, send)


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
