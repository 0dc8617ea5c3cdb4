"""E0, the framework ceiling: FastAPI reading the raw body and answering a constant 201 JSON.

Whatever the service does beyond this (auth, validation, rules, database, audit) is what it
costs; this is what uvicorn + FastAPI cost on their own on this machine.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

CONSTANT = b'{"id":"00000000-0000-4000-8000-000000000000","status":"awaiting_triage"}'


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/referrals", status_code=201)
    async def create(request: Request) -> Response:
        await request.body()
        return Response(CONSTANT, status_code=201, media_type="application/json")

    return app
