"""Dependencies: the request's unit of work, the caller, the clock, and one alias per scope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.rate_limit import limit_organisation
from eligibility import Ruleset
from service.audit.group_append import AuditBatches
from service.audit.refusals import record_refusal
from service.auth.scopes import (
    SCOPE_AUDIT,
    SCOPE_AUDIT_ALL,
    SCOPE_READ,
    SCOPE_SUBMIT,
    SCOPE_TRIAGE,
    SCOPE_WEBHOOKS,
)
from service.auth.tokens import (
    InvalidToken,
    TokenVerifier,
)
from service.core.context import RequestContext
from service.core.errors import AuditNote, Forbidden, Unauthenticated, audited
from service.core.settings import Settings
from service.core.unit_of_work import UnitOfWork
from service.notifications import outbox, sealing
from service.notifications.safety import UrlPolicy
from service.notifications.sealing import SecretBox
from service.referrals.group_intake import IntakeBatches


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """What the app holds for its lifetime; built once by create_app()."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    ruleset: Ruleset
    verifier: TokenVerifier
    clock: Callable[[], datetime] = utc_now
    # Where webhooks may go (SSRF): built from the settings unless a test hands in a resolver.
    url_policy: UrlPolicy | None = None
    units: UnitOfWork = field(init=False)
    # Seals webhook signing secrets before they are stored (REFERRAL_WEBHOOK_SECRET_KEYS).
    secret_box: SecretBox = field(init=False)
    # Group commit of intakes (PostgreSQL, REFERRAL_INTAKE_BATCH_MAX > 1); None: one
    # transaction per intake, in the request's own unit of work.
    intake_batches: IntakeBatches | None = field(init=False)
    # Group commit of the reads' audit events (PostgreSQL, REFERRAL_READ_AUDIT_BATCH_MAX > 1);
    # None: each read appends its event in the request's own unit of work.
    audit_batches: AuditBatches | None = field(init=False)

    def __post_init__(self) -> None:
        # The clock is read through self, so a test that replaces it moves refusals' times too.
        self.units = UnitOfWork(
            self.sessions,
            clock=lambda: self.clock(),
            record_refusal=record_refusal,
            listeners=(outbox.write,),  # the webhook outbox, written in each transaction
        )
        if self.url_policy is None:
            self.url_policy = UrlPolicy(allow_insecure=self.settings.webhook_allow_insecure)
        self.secret_box = sealing.from_settings(self.settings)
        postgres = self.engine.dialect.name == "postgresql"
        batch_max = self.settings.intake_batch_max
        self.intake_batches = (
            IntakeBatches(self.units, max_batch=batch_max) if postgres and batch_max > 1 else None
        )
        audit_max = self.settings.read_audit_batch_max
        self.audit_batches = (
            AuditBatches(self.units, max_batch=audit_max) if postgres and audit_max > 1 else None
        )


def services_in(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def services_of(request: Request) -> Services:
    return services_in(request)


ServicesDep = Annotated[Services, Depends(services_of)]
# The dependencies below read the services from the request rather than through ServicesDep:
# FastAPI walks a dependency's whole subtree every time it appears, cached or not, and each
# node costs a few microseconds per request; ServicesDep under four dependencies of every route
# was five of the fifteen nodes that intake solved.


@dataclass(frozen=True, slots=True)
class Clock:
    now: datetime
    today: date  # in the service's time zone: the default evaluation date
    zone: tzinfo  # the service's time zone ("today", waiting days)


async def clock(request: Request) -> Clock:
    services = services_in(request)
    now = services.clock()
    zone = services.settings.zone
    return Clock(now=now, today=now.astimezone(zone).date(), zone=zone)


ClockDep = Annotated[Clock, Depends(clock)]

_bearer = HTTPBearer(auto_error=False, description="A JWT from your identity provider.")


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> RequestContext:
    """Verify the bearer token; 401 for a missing or bad one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("A bearer token is required.")
    try:
        verified = await services_in(request).verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise Unauthenticated(f"The bearer token was refused: {exc.reason}.") from None
    ctx = RequestContext(
        caller=verified,
        request_id=str(request.state.request_id),
        correlation_id=getattr(request.state, "correlation_id", None),
    )
    request.state.ctx = ctx
    # After ctx is set: a verified caller counts against its organisation, not its address.
    await limit_organisation(request, verified.org)
    return ctx


Caller = Annotated[RequestContext, Depends(caller)]


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work (service/core): commit on success, roll back on error, and a
    refusal that is itself auditable recorded on its own once the caller is known."""
    async with services_in(request).units.begin(lambda: getattr(request.state, "ctx", None)) as db:
        yield db


# scope="function": commit before the response is sent, so a failed commit is a 503, not a
# 201 for data that was never stored.
SessionDep = Annotated[AsyncSession, Depends(session, scope="function")]


def _require(
    *scopes: str, resource_type: str
) -> Callable[..., Coroutine[Any, Any, RequestContext]]:
    async def check(request: Request, ctx: Caller, _db: SessionDep) -> RequestContext:
        if any(ctx.caller.has(s) for s in scopes):
            return ctx
        attempted = f"{request.method} {request.scope.get('route').path}"  # type: ignore[union-attr]
        raise audited(
            Forbidden(f"This needs the scope {' or '.join(scopes)}."),
            AuditNote(
                "access.denied",
                resource_type,
                None,
                "denied",
                {"attempted": attempted, "reason": "insufficient_scope"},
            ),
        )

    return check


CanSubmit = Annotated[RequestContext, Depends(_require(SCOPE_SUBMIT, resource_type="referral"))]
CanRead = Annotated[
    RequestContext, Depends(_require(SCOPE_READ, SCOPE_TRIAGE, resource_type="referral"))
]
CanSubmitOrTriage = Annotated[
    RequestContext, Depends(_require(SCOPE_SUBMIT, SCOPE_TRIAGE, resource_type="referral"))
]
CanTriage = Annotated[RequestContext, Depends(_require(SCOPE_TRIAGE, resource_type="referral"))]
CanAudit = Annotated[
    RequestContext, Depends(_require(SCOPE_AUDIT, SCOPE_AUDIT_ALL, resource_type="audit"))
]
CanManageWebhooks = Annotated[
    RequestContext, Depends(_require(SCOPE_WEBHOOKS, resource_type="webhook_subscription"))
]
CanAuditAll = Annotated[RequestContext, Depends(_require(SCOPE_AUDIT_ALL, resource_type="audit"))]


async def ruleset(request: Request) -> Ruleset:
    return services_in(request).ruleset


RulesetDep = Annotated[Ruleset, Depends(ruleset)]
