"""Post-processing of the generated OpenAPI document (owned by the contract work, issue 5)."""

from __future__ import annotations

from typing import Any

from api.openapi_docs import PROBLEM_COMPONENT
from eligibility import Ruleset


def customise(document: dict[str, Any], ruleset: Ruleset) -> dict[str, Any]:
    """Add what FastAPI cannot derive: the Problem schema (more to come: code enums, links)."""
    document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_COMPONENT
    return document
