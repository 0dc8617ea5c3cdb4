"""The contract tests' app: the real factory, with its clock pinned to the examples' day.

The committed document's request examples carry fixed dates (an antenatal due date is only
acceptable from 14 days before to 294 days after "today"), so the app under contract test sees
today as `EXAMPLES_VALID_ON`: the examples are then valid by construction, on any day CI runs.
Time still moves forward from there, so ordering and expiry behave as in production.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from api.app import create_app, load_active_ruleset
from api.deps import Services
from api.openapi_custom import EXAMPLES_VALID_ON
from service.auth.tokens import TokenVerifier
from service.core.database import create_engine, make_sessionmaker
from service.core.settings import Settings
from service.notifications.safety import UrlPolicy

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_DOCUMENT = ROOT / "openapi" / "openapi.json"
# Noon UTC is the same calendar day in Europe/London all year round.
PINNED_START = datetime.combine(EXAMPLES_VALID_ON, time(12, 0), tzinfo=UTC)


def pinned_clock() -> Callable[[], datetime]:
    started = datetime.now(UTC)
    return lambda: PINNED_START + (datetime.now(UTC) - started)


# Schemathesis sends thousands of requests from one address and one organisation, many with
# invalid tokens on purpose: the contract is checked with limits it never reaches (the limits
# themselves are tested in tests/api/test_rate_limits.py).
UNREACHED_LIMITS = {
    "rate_limits": "100000000/minute",
    "rate_limits_submit": "100000000/minute",
    "rate_limits_anonymous": "100000000/minute",
    "webhook_max_subscriptions": 1000,
    # Subscriptions are created, never called: no webhook leaves the contract tests.
    "webhook_dispatcher": False,
}


async def public_resolver(_host: str, _port: int) -> list[str]:
    """Every webhook host resolves to a public address (a stub: no DNS in the contract tests;
    the SSRF refusals are tested in tests/api/test_webhooks_access.py)."""
    return ["93.184.215.14"]


def build_app(settings: Settings) -> FastAPI:
    """create_app() with the services it would build itself, but the clock pinned."""
    settings = settings.model_copy(update=UNREACHED_LIMITS)
    engine = create_engine(settings)
    sessions = make_sessionmaker(engine)
    clock = pinned_clock()
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        ruleset=load_active_ruleset(settings),
        verifier=TokenVerifier(settings),
        clock=clock,
        url_policy=UrlPolicy(allow_insecure=False, resolver=public_resolver),
    )
    return create_app(settings, services=services)


def load_document() -> dict[str, Any]:
    """The committed contract, as partners and `make contract` see it."""
    with COMMITTED_DOCUMENT.open(encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


@pytest.fixture(scope="session")
def committed_document() -> dict[str, Any]:
    return load_document()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


class CurrentApp:
    """One ASGI app for a module-level schema, forwarding to the app of the running test.

    Schemathesis binds its schema (and every clone it makes per operation) to an app when the
    module is imported, but each test needs a fresh app on a fresh database: this stands in.
    """

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            raise RuntimeError("no app under test: use the contract_app fixture")
        await self.app(scope, receive, send)
