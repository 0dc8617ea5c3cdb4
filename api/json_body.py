"""Request bodies parsed once, refusing duplicate keys and any media type but JSON (installed as
each router's route class)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from service.core.strict_json import DuplicateKeys, loads_unique


class DuplicateKeysInBody(HTTPException):
    """FastAPI re-raises HTTPExceptions from body parsing (anything else becomes a bare 400),
    so this reaches its own problem handler in api/problems.py."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(400, "The body repeats a key.")
        self.paths = paths


def require_json(request: Request) -> None:
    """415 unless the body is JSON: a form or text body is a client bug, not invalid content."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "Send the body as application/json.")


class StrictJsonRequest(Request):
    # True on routes that take a body. Checked once the body is in, which is where FastAPI
    # reads it before anything else: a body too large or too slow is still 413 or 408, and
    # 415 comes before the token, the parameters or the content are looked at. (It was the
    # first dependency of each such route; a dependency costs more per request than this.)
    json_only = False

    async def body(self) -> bytes:
        body = await super().body()
        if self.json_only:
            require_json(self)
        return body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_unique(await self.body())
            except DuplicateKeys as exc:
                raise DuplicateKeysInBody(exc.paths) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handler reads the body through StrictJsonRequest: the body is parsed
    in FastAPI's own single pass, not a second time by a middleware, and only if it is JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            strict = StrictJsonRequest(request.scope, request.receive)
            strict.json_only = takes_body
            return await handler(strict)

        return strict_handler
