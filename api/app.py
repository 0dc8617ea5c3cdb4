"""The application factory: settings in, a ready ASGI app out. Nothing happens at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api import docs, problems
from api.deps import Services
from api.middleware import RequestContextMiddleware
from api.openapi_custom import customise
from api.rate_limit import RateLimitMiddleware
from api.routes import audit, eligibility, health, lifecycle, pathway, referrals, webhooks
from eligibility import Ruleset, default_ruleset, load_ruleset
from service.audit.anchor import log_head_forever
from service.auth.tokens import TokenVerifier
from service.core import metrics, migrate
from service.core.database import create_engine, is_sqlite, make_sessionmaker
from service.core.logs import configure_logging
from service.core.rate_limits import RateLimits
from service.core.settings import Settings, get_settings
from service.notifications import dispatcher

API_VERSION = "1.0.0"
DESCRIPTION = """\
Referrals to specialised parent-infant relationship teams: multidisciplinary teams that help
babies under two and their parents or carers when their relationship is in difficulty.

Partner systems (health visiting, GP, midwifery, perinatal mental health) submit referrals and
get an immediate, explainable and **provisional** decision: step up, step down or signpost. A
team clinician confirms it later. No diagnosis is ever required. Every action is audited.

Authenticate with a bearer JWT carrying `sub`, `org` and `scope` (space-separated:
`referrals:submit`, `referrals:read`, `referrals:triage`, `audit:read` for your organisation's
audit events, `audit:read_all` for the team's information governance: every event and
verifying the trail, `webhooks:manage` for your organisation's webhook subscriptions).
"""


def load_active_ruleset(settings: Settings) -> Ruleset:
    return load_ruleset(settings.ruleset_path) if settings.ruleset_path else default_ruleset()


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    if services is None:
        engine = create_engine(settings, for_requests=True)
        metrics.track_pool(engine)
        sessions = make_sessionmaker(engine)
        services = Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            ruleset=load_active_ruleset(settings),
            verifier=TokenVerifier(settings),
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if is_sqlite(settings.database_url):
            # The embedded default migrates itself; PostgreSQL is migrated by `migrate`.
            await migrate.upgrade(services.engine)
        anchor_task = None
        if settings.audit_head_log_seconds:
            anchor_task = asyncio.create_task(
                log_head_forever(services.sessions, settings.audit_head_log_seconds)
            )
        webhooks = None
        if settings.webhook_dispatcher:
            # In-process by default, so `make run` delivers with nothing else running.
            webhooks = dispatcher.from_settings(
                settings, services.units, policy=services.url_policy
            )
            dispatch_task = asyncio.create_task(webhooks.run())
        try:
            yield
        finally:
            if services.intake_batches is not None:
                await services.intake_batches.close()
            if services.audit_batches is not None:
                await services.audit_batches.close()
            if webhooks is not None:
                await webhooks.shut_down(dispatch_task)
            if anchor_task is not None:
                anchor_task.cancel()
            await services.verifier.aclose()
            await services.engine.dispose()

    app = FastAPI(
        title="Parent-infant referral pathway API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # Served by a route of our own below: FastAPI's is a bare Starlette route, which
        # leaves no route template for the metrics (it was counted as "unmatched").
        openapi_url=None,
    )
    app.state.services = services
    app.state.rate_limits = RateLimits(settings)
    problems.install(app)
    # Added first, so it runs inside RequestContextMiddleware: its 429s carry the request id.
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_read_timeout_seconds=settings.body_read_timeout_seconds,
    )
    app.include_router(referrals.router)
    app.include_router(lifecycle.router)
    app.include_router(eligibility.router)
    app.include_router(pathway.router)
    app.include_router(audit.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    docs.install(app)
    _install_openapi(app, services.ruleset)
    return app


def _install_openapi(app: FastAPI, ruleset: Ruleset) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        app.openapi_schema = customise(original(), ruleset)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())
