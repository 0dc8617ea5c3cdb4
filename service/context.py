"""Who is acting, and in which request: passed to every use case and audit append."""

from __future__ import annotations

from dataclasses import dataclass

from service.tokens import Caller


@dataclass(frozen=True, slots=True)
class RequestContext:
    caller: Caller
    request_id: str
