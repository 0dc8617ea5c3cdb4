"""Health responses (readiness is documented in api.openapi_custom: it answers 200 and 503)."""

from __future__ import annotations

from typing import Literal

from api.schemas.common import ResponseModel


class Liveness(ResponseModel):
    status: Literal["ok"]
