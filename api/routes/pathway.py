"""The public description of the active ruleset."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import RulesetDep
from api.schemas.pathway import Pathway

router = APIRouter(prefix="/v1", tags=["pathway"])


@router.get("/pathway", operation_id="pathway-get", summary="Describe the referral pathway")
async def get_pathway(ruleset: RulesetDep) -> Pathway:
    """The active ruleset (no authentication needed): its id, version and SHA-256, the
    eligibility criteria, what each outcome means, the code lists and the glossary."""
    return Pathway.model_validate(ruleset.describe())
