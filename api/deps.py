"""Dependencies: the one session owner per request, the caller, and one alias per scope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException

from eligibility import Ruleset
from service.audit import chain
from service.auth.scopes import (
    SCOPE_AUDIT,
    SCOPE_AUDIT_ALL,
    SCOPE_READ,
    SCOPE_SUBMIT,
    SCOPE_TRIAGE,
)
from service.auth.tokens import (
    InvalidToken,
    TokenVerifier,
)
from service.core.context import RequestContext
from service.core.errors import AuditNote, DomainError, Forbidden, Unauthenticated, audited
from service.core.settings import Settings

# Callables run once the request's transaction has committed (e.g. counting a stored referral).
AFTER_COMMIT = "after_commit"


def after_commit(db: AsyncSession, hook: Callable[[], None]) -> None:
    db.info.setdefault(AFTER_COMMIT, []).append(hook)


# async: FastAPI runs a plain `def` dependency in a worker thread, a costly hop per request.
async def _json_body_only(request: Request) -> None:
    """415 unless the body is JSON: a form or text body is a client bug, not invalid content."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "Send the body as application/json.")


# Listed first on every route that takes a body, so 415 comes before any other check.
JSON_BODY_ONLY = [Depends(_json_body_only)]


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


async def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(services_of)]


@dataclass(frozen=True, slots=True)
class Clock:
    now: datetime
    today: date  # in the service's time zone: the default evaluation date


async def clock(services: ServicesDep) -> Clock:
    now = services.clock()
    return Clock(now=now, today=now.astimezone(services.settings.zone).date())


ClockDep = Annotated[Clock, Depends(clock)]

_bearer = HTTPBearer(auto_error=False, description="A JWT from your identity provider.")


async def caller(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> RequestContext:
    """Verify the bearer token; 401 for a missing or bad one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("A bearer token is required.")
    try:
        verified = await services.verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise Unauthenticated(f"The bearer token was refused: {exc.reason}.") from None
    ctx = RequestContext(caller=verified, request_id=str(request.state.request_id))
    request.state.ctx = ctx
    return ctx


Caller = Annotated[RequestContext, Depends(caller)]


async def session(request: Request, services: ServicesDep) -> AsyncIterator[AsyncSession]:
    """The one owner of the request's session: commit on success, roll back on error.

    A refusal that is itself an auditable action (access denied, a missing referral) is
    rolled back and then recorded on its own, so nothing of the refused work is kept.
    """
    async with services.sessions() as db:
        try:
            yield db
        except DomainError as error:
            await db.rollback()
            ctx: RequestContext | None = getattr(request.state, "ctx", None)
            if error.audit is not None and ctx is not None:
                await _record_refusal(db, ctx, error.audit, services.clock())
                await db.commit()
            raise
        except BaseException:
            await db.rollback()
            raise
        await db.commit()
        for hook in db.info.pop(AFTER_COMMIT, ()):
            hook()


async def _record_refusal(
    db: AsyncSession, ctx: RequestContext, note: AuditNote, now: datetime
) -> None:
    await chain.append(
        await db.connection(),
        ctx,
        action=note.action,
        resource_type=note.resource_type,
        resource_id=note.resource_id,
        outcome=note.outcome,
        now=now,
        details=note.details,
    )


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
CanTriage = Annotated[RequestContext, Depends(_require(SCOPE_TRIAGE, resource_type="referral"))]
CanAudit = Annotated[
    RequestContext, Depends(_require(SCOPE_AUDIT, SCOPE_AUDIT_ALL, resource_type="audit"))
]
CanAuditAll = Annotated[RequestContext, Depends(_require(SCOPE_AUDIT_ALL, resource_type="audit"))]


async def ruleset(services: ServicesDep) -> Ruleset:
    return services.ruleset


RulesetDep = Annotated[Ruleset, Depends(ruleset)]
