"""Request bodies parsed once, refusing duplicate keys (installed as each router's route class)."""

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


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_unique(await self.body())
            except DuplicateKeys as exc:
                raise DuplicateKeysInBody(exc.paths) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handler reads the body through StrictJsonRequest: the body is parsed
    in FastAPI's own single pass, not a second time by a middleware."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
