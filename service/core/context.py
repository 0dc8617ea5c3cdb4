"""Who is acting, and in which request: passed to every use case and audit append."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, from a verified token (service/auth makes it; every domain reads it)."""

    sub: str
    org: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class RequestContext:
    caller: Caller
    # Always the service's own id for the request (logs, the audit trail, X-Request-ID).
    request_id: str
    # The caller's own X-Request-ID, if it sent a sane one: a label for the caller's records,
    # never taken for ours (another organisation could send our ids as its own).
    correlation_id: str | None = None
