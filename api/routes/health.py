"""Liveness and readiness for load balancers and orchestrators. Metrics are not here: they are
served on their own port (service.core.metrics), out of reach of the public ingress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from api.schemas.health import Liveness
from service.core.health import readiness

router = APIRouter(tags=["health"])


@router.get("/health/live", operation_id="health-live", summary="Is the process up")
async def live() -> Liveness:
    """Answers while the process runs; never touches the database, so an outage of the
    database does not get healthy replicas restarted."""
    return Liveness(status="ok")


@router.get(
    "/health/ready",
    operation_id="health-ready",
    summary="Can this instance serve",
    responses={503: {"description": "Not ready: database unreachable or not migrated."}},
)
async def ready(services: ServicesDep) -> Any:
    """Ready when the database answers and its schema is at the latest migration."""
    report = await readiness(services.engine)
    if report.ready:
        return {"status": "ready", "database": "ok", "schema": report.revision}
    return JSONResponse(
        {"status": "not_ready", "database": report.database, "schema": report.revision},
        status_code=503,
        headers={"Retry-After": str(services.settings.retry_after_seconds)},
    )
