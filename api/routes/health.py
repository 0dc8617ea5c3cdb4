"""Liveness, readiness and metrics for load balancers, orchestrators and monitoring."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api.deps import ServicesDep
from api.schemas.health import Liveness
from service.core import metrics
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


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        }
    },
)
async def prometheus_metrics() -> Response:
    """Request rates and latencies by route template, referrals by outcome and priority, the
    audit head sequence and database connections in use. No personal data in any label."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
