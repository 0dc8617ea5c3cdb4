"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a queue per request)."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import traceback
import uuid

from fastapi import HTTPException
from prometheus_client import Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import internal_error, problem_response
from service.core import logs, metrics

logger = logging.getLogger("api.errors")
access = logging.getLogger("api.access")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; FastAPI re-raises HTTPExceptions from body reading,
    so the problem handler renders it like any other 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The body is larger than {limit} bytes.")


class BodyReadTimeout(HTTPException):
    """Raised when the next chunk of a body does not arrive in time: a client that sends its
    headers and then trickles (or stops) holds a connection and a task for nothing."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"The body did not arrive in time: each part must follow within {seconds:g} s.",
            headers={"Connection": "close"},
        )


class RequestContextMiddleware:
    """Gives every request an id of the service's own and turns any crash into a problem+json
    500 that carries it, logging where it happened but never the message.

    A caller's own X-Request-ID (when sane) is kept apart, as the request's correlation id: in
    the logs, the audit event and the X-Correlation-ID response header, but never as our
    request id. Taken as ours, it would let one organisation label its audit events with
    another's request ids."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, body_read_timeout_seconds: float = 30
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout = body_read_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        correlation_id = _correlation_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["correlation_id"] = correlation_id
        bound = logs.bind_request_id(request_id, correlation_id)
        try:
            await self._serve(scope, receive, send, request_id, correlation_id)
        except BaseException:
            # Left bound on purpose: the server logs the crash after we return, and that
            # record should carry the id too. The binding dies with the request's own task.
            raise
        else:
            logs.unbind_request_id(bound)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        correlation_id: str | None,
    ) -> None:
        ids = {"X-Request-ID": request_id}
        if correlation_id is not None:
            ids["X-Correlation-ID"] = correlation_id
        if _declared_length(scope) > self.max_body_bytes:
            # Refused before a byte of the body is read.
            too_large = problem_response(
                Request(scope),
                status=413,
                title="Content Too Large",
                slug="content-too-large",
                detail=f"The body is larger than {self.max_body_bytes} bytes.",
                headers={**ids, "Connection": "close"},
            )
            await too_large(scope, receive, send)
            return
        received = 0
        body_complete = False
        started = False
        status = 500
        began = time.perf_counter()

        async def receive_within_limit() -> Message:
            # A body without a Content-Length (chunked) is counted as it streams in and
            # refused as soon as it passes the limit: it is never held whole in memory.
            nonlocal received, body_complete
            if body_complete:
                # Only waiting for a disconnect now (streaming responses): no deadline.
                return await receive()
            try:
                async with asyncio.timeout(self.body_read_timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyReadTimeout(self.body_read_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
                body_complete = not message.get("more_body", False)
            else:
                body_complete = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal started
            nonlocal status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in ids.items():
                    headers.append(name, value)
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_with_id)
        except Exception as exc:
            # The exception text may quote personal data; its type and location do not.
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            logger.error(
                "unhandled error",
                extra={
                    "error": type(exc).__name__,
                    "where": f"{where.filename}:{where.lineno}" if where else None,
                },
            )
            if started:
                raise
            await internal_error(Request(scope))(scope, receive, send_with_id)
        finally:
            _observe(scope, ids, status, time.perf_counter() - began)


def _observe(scope: Scope, ids: dict[str, str], status: int, seconds: float) -> None:
    # The route template, never the raw path: ids stay out of labels, and unknown paths
    # cannot blow up the number of series.
    route = scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    method = scope["method"]
    count, latency = _series(template, method, status)
    count.inc()
    latency.observe(seconds)
    access.info(
        "request",
        extra={
            "request_id": ids["X-Request-ID"],
            **({"correlation_id": ids["X-Correlation-ID"]} if "X-Correlation-ID" in ids else {}),
            "method": method,
            "route": template,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )


# labels() builds and locks its way to the child series on every call; the children never
# change, so each (route, method, status) looks them up once. Bounded: a client's made-up
# methods on unmatched paths must not grow it without end.
@functools.lru_cache(maxsize=1024)
def _series(template: str, method: str, status: int) -> tuple[Counter, Histogram]:
    return (
        metrics.REQUESTS.labels(template, method, str(status)),
        metrics.LATENCY.labels(template, method),
    )


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _correlation_id(scope: Scope) -> str | None:
    """The caller's X-Request-ID, if it is sane; anything else is dropped, never echoed."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            return candidate if _SANE_REQUEST_ID.match(candidate) else None
    return None
