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
    request_id: str
