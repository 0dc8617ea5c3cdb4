"""The dry run: the rules applied to a referral body, nothing stored but an audit event."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CanSubmit, ClockDep, RulesetDep, ServicesDep, SessionDep
from api.json_body import StrictJsonRoute
from api.openapi_docs import REFERRAL_EXAMPLES, responses
from api.schemas.common import EvaluationDate
from api.schemas.referrals import ReferralCreate
from api.schemas.referrals_public import Decision
from api.views import submission_of
from service.referrals import queries

router = APIRouter(prefix="/v1/eligibility", tags=["eligibility"], route_class=StrictJsonRoute)


@router.post(
    "/check",
    operation_id="eligibility-check",
    summary="Check eligibility without submitting",
    responses=responses(200, 400, 401, 403, 413, 415, 422, 503),
)
async def check_eligibility(
    body: Annotated[ReferralCreate, REFERRAL_EXAMPLES],
    ctx: CanSubmit,
    db: SessionDep,
    now: ClockDep,
    ruleset: RulesetDep,
    services: ServicesDep,
    as_of: Annotated[
        EvaluationDate | None,
        Query(
            description="Evaluate the rules (and the body's date checks) at this date; "
            "default today in the service's time zone."
        ),
    ] = None,
) -> Decision:
    """Apply the active rules to a referral body and return the decision it would get (scope
    `referrals:submit`). Nothing is stored except an audit event without personal data."""
    decision = await queries.check_eligibility(
        session=db,
        ctx=ctx,
        submission=submission_of(body),
        ruleset=ruleset,
        as_of=as_of or now.today,
        now=now.now,
        audit=services.audit_batches,
    )
    return Decision.model_validate(decision.to_dict())
