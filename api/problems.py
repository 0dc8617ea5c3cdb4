"""Every error leaves as RFC 9457 problem+json: domain errors, the framework's own, and crashes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.json_body import DuplicateKeysInBody
from eligibility import UnknownCodeError
from service.core.database import database_unavailable, refusal_cause
from service.core.errors import DomainError, FieldProblem, InvalidContent, Unavailable

logger = logging.getLogger("api.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://referrals.example/problems/"
BEARER_INVALID = 'Bearer error="invalid_token"'
BEARER_SCOPE = 'Bearer error="insufficient_scope"'
# A body with thousands of bad fields would otherwise get a reply hundreds of times its size.
MAX_LISTED_PROBLEMS = 50

_HTTP_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}
_HTTP_SLUGS = {
    400: "malformed-request",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    413: "content-too-large",
    415: "unsupported-media-type",
    500: "internal",
}


def problem_body(
    *,
    status: int,
    title: str,
    slug: str,
    detail: str,
    instance: str,
    request_id: str,
    errors: Sequence[FieldProblem] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    if errors is not None:
        listed, omitted = errors[:MAX_LISTED_PROBLEMS], len(errors) - MAX_LISTED_PROBLEMS
        body["errors"] = [{"field": e.field, "message": e.message} for e in listed]
        if omitted > 0:
            listed_note = f"The first {len(listed)} problems are listed"
            body["detail"] = f"{detail} {listed_note}, and {omitted} more problems."
            body["errors_omitted"] = omitted
    return body


def problem_response(
    request: Request,
    *,
    status: int,
    title: str,
    slug: str,
    detail: str,
    errors: Sequence[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
    members: dict[str, object] | None = None,
) -> JSONResponse:
    body = problem_body(
        status=status,
        title=title,
        slug=slug,
        detail=detail,
        instance=request.url.path,
        request_id=request_id_of(request),
        errors=errors,
    )
    # Extension members never replace the standard ones (RFC 9457 section 3.2).
    body.update({k: v for k, v in (members or {}).items() if k not in body})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def field_path(loc: Sequence[int | str]) -> str:
    """('body', 'caregivers', 0, 'phone') -> 'caregivers[0].phone'; query params by name."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _validation_problems(exc: RequestValidationError) -> list[FieldProblem]:
    problems = []
    for error in exc.errors():
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "is required"
        elif error.get("type") == "extra_forbidden":
            message = "is not a known field"
        # Never echo error["input"]: it may be personal data.
        problems.append(FieldProblem(field_path(error.get("loc", ())), message))
    return problems


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return problem_response(
            request,
            status=400,
            title="Bad Request",
            slug="malformed-json",
            detail="The body is not valid JSON.",
        )
    return problem_response(
        request,
        status=422,
        title="Unprocessable Content",
        slug="validation",
        detail="The request is not valid.",
        errors=_validation_problems(exc),
    )


async def _on_duplicate_keys(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DuplicateKeysInBody)
    # Which key, never which values: both may be personal data.
    return problem_response(
        request,
        status=400,
        title="Bad Request",
        slug="duplicate-key",
        detail="The body gives a key more than once; send each key once.",
        errors=[FieldProblem(path, "is given more than once") for path in exc.paths],
    )


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = BEARER_INVALID
    elif exc.status == 403:
        headers["WWW-Authenticate"] = BEARER_SCOPE
    elif exc.status == 503:
        headers["Retry-After"] = str(request.app.state.services.settings.retry_after_seconds)
    errors = exc.problems if isinstance(exc, InvalidContent) else None
    response = problem_response(
        request,
        status=exc.status,
        title=exc.title,
        slug=exc.type_slug,
        detail=exc.detail,
        errors=errors,
        headers={**headers, **exc.headers},
        members=exc.members,
    )
    return response


async def _on_unknown_code(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnknownCodeError)
    problems = [FieldProblem(p.field, f"unknown code '{p.code}'") for p in exc.problems]
    return await _on_domain_error(request, InvalidContent(problems))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    title = _HTTP_TITLES.get(status, "Error")
    detail = exc.detail if isinstance(exc.detail, str) and status != 500 else title
    if status == 404:
        detail = "No such resource."
    headers = dict(exc.headers or {})
    if status == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        request,
        status=status,
        title=title,
        slug=_HTTP_SLUGS.get(status, "http-error"),
        detail=detail,
        headers=headers,
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    # Starlette names only the first route that matched the path, but a path can have several
    # (GET and POST /v1/referrals are two routes): ask the router about each method instead.
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    # Only the class name and a fixed cause: driver messages can carry SQL, values, and the
    # names of the database and role.
    cause = refusal_cause(exc)
    if cause is not None:
        # Not an outage but our configuration: error level, naming what to fix.
        logger.error(
            "database refused the connection: %s", cause, extra={"error": type(exc).__name__}
        )
    else:
        logger.warning("database unavailable", extra={"error": type(exc).__name__})
    return await _on_domain_error(
        request, Unavailable("The database is unavailable; try again shortly.")
    )


async def _on_dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if database_unavailable(exc):
        return await _on_database_down(request, exc)
    logger.error("database error", extra={"error": type(exc.orig).__name__})
    return internal_error(request)


async def _on_driver_error(request: Request, exc: Exception) -> JSONResponse:
    # asyncpg raises some errors while connecting (server starting up or shutting down, too
    # many connections) without SQLAlchemy wrapping them.
    if database_unavailable(exc):
        return await _on_database_down(request, exc)
    logger.error("database error", extra={"error": type(exc).__name__})
    return internal_error(request)


def internal_error(request: Request) -> JSONResponse:
    return problem_response(
        request,
        status=500,
        title="Internal Server Error",
        slug="internal",
        detail="Something went wrong on our side; it has been logged.",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(UnknownCodeError, _on_unknown_code)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(DuplicateKeysInBody, _on_duplicate_keys)
    app.add_exception_handler(DBAPIError, _on_dbapi_error)
    app.add_exception_handler(asyncpg.PostgresError, _on_driver_error)
    app.add_exception_handler(asyncpg.InterfaceError, _on_driver_error)
    app.add_exception_handler(PoolTimeout, _on_database_down)
    app.add_exception_handler(OSError, _on_database_down)
    app.add_exception_handler(TimeoutError, _on_database_down)
