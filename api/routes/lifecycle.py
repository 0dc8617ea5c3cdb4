"""The referral's moves after intake: triage, withdraw, close, and its history (lifecycle.md)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Header, Response

from api.deps import (
    CanRead,
    CanSubmitOrTriage,
    CanTriage,
    ClockDep,
    RulesetDep,
    ServicesDep,
    SessionDep,
)
from api.json_body import StrictJsonRoute
from api.openapi_docs import responses
from api.routes.referrals import IdempotencyKey, etag
from api.schemas.lifecycle import (
    CloseCreate,
    HistoryEntry,
    ReasonCreate,
    TriageCreate,
    WithdrawCreate,
)
from api.schemas.referrals_public import ReferralPublic
from api.views import referral_public
from eligibility import Ruleset
from service.core import metrics
from service.core.context import RequestContext
from service.core.unit_of_work import after_commit
from service.referrals import lifecycle, queries
from service.referrals.statuses import Action

TRIAGE_EXAMPLES = Body(
    openapi_examples={
        "confirm": {
            "summary": "Confirm the rules' outcome and priority",
            "value": {"outcome": "step_up"},
        },
        "override": {
            "summary": "Override: step down, with a reason",
            "value": {
                "outcome": "step_down",
                "reason": {
                    "code": "additional_information",
                    "comment": "Health visitor called: support at home since referral.",
                },
            },
        },
        "signpost": {
            "summary": "Signpost to services of the ruleset's directory",
            "value": {
                "outcome": "signpost",
                "reason": {"code": "clinical_judgement"},
                "signposts": ["perinatal_mental_health", "health_visiting"],
            },
        },
    }
)
WITHDRAW_EXAMPLES = Body(
    openapi_examples={
        "referred_elsewhere": {
            "summary": "Referred elsewhere",
            "value": {"reason": {"code": "referred_elsewhere"}},
        }
    }
)
CLOSE_EXAMPLES = Body(
    openapi_examples={
        "completed": {
            "summary": "Intervention completed",
            "value": {"reason": {"code": "intervention_completed"}},
        }
    }
)

router = APIRouter(prefix="/v1/referrals", tags=["lifecycle"], route_class=StrictJsonRoute)

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=64,
        description='The referral\'s ETag from your last read, e.g. `W/"1"`. Required: '
        "without it 428; if the referral has moved since, 412 with its current version.",
    ),
]
_ETAG = re.compile(r'^\s*(?:W/)?"([0-9]{1,9})"\s*$')
_NOT_A_VERSION = -1  # what an unreadable If-Match becomes: it matches no version (412)


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    found = _ETAG.match(value)
    return int(found.group(1)) if found else _NOT_A_VERSION


def _reason(body: ReasonCreate | None) -> lifecycle.Reason | None:
    return None if body is None else lifecycle.Reason(body.code, body.comment)


def reason_codes(ruleset: Ruleset) -> lifecycle.ReasonCodes:
    reasons = ruleset.lifecycle_reasons
    return lifecycle.ReasonCodes(
        triage=frozenset(reasons["triage"]),
        withdraw=frozenset(reasons["withdraw"]),
        close=frozenset(reasons["close"]),
    )


async def _act(
    *,
    referral_id: uuid.UUID,
    request: lifecycle.ActionRequest,
    ctx: RequestContext,
    db: SessionDep,
    now: ClockDep,
    ruleset: Ruleset,
    services: ServicesDep,
    response: Response,
    if_match: str | None,
    idempotency_key: str | None,
) -> ReferralPublic:
    acted = await lifecycle.act(
        session=db,
        ctx=ctx,
        referral_id=str(referral_id),
        request=request,
        if_match=parse_if_match(if_match),
        codes=reason_codes(ruleset),
        directory=ruleset.services_by_id,
        now=now.now,
        idempotency_key=idempotency_key,
        idempotency_ttl=timedelta(hours=services.settings.idempotency_ttl_hours),
    )
    referral = acted.referral
    response.headers["ETag"] = etag(referral.version)
    if acted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    elif acted.move is not None:
        move = acted.move
        moves = metrics.MOVES.labels(str(move.action), str(move.source), str(move.target))
        after_commit(db, moves.inc)
        if acted.agrees_with_rules is not None:
            agreement = metrics.TRIAGE_AGREEMENT.labels(
                str(referral.decision["outcome"]),
                referral.outcome,
                "agree" if acted.agrees_with_rules else "override",
            )
            after_commit(db, agreement.inc)
    duplicates = await queries.duplicates_of(session=db, ctx=ctx, referral=referral)
    return referral_public(referral, caller=ctx.caller, possible_duplicates=duplicates)


_ACTION_RESPONSES = responses(200, 400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 503)


@router.post(
    "/{referral_id}/triage",
    operation_id="referrals-triage",
    summary="Triage a referral",
    responses=_ACTION_RESPONSES,
)
async def triage_referral(
    referral_id: uuid.UUID,
    body: Annotated[TriageCreate, TRIAGE_EXAMPLES],
    ctx: CanTriage,
    db: SessionDep,
    now: ClockDep,
    ruleset: RulesetDep,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> ReferralPublic:
    """A team clinician confirms or overrides the rules' provisional decision (scope
    `referrals:triage`). An override needs a reason; `signpost` needs services. Afterwards the
    referral is no longer provisional; the rules' decision stays as it was, beside the triage."""
    request = lifecycle.ActionRequest(
        Action.triage,
        _reason(body.reason),
        outcome=str(body.outcome),
        priority=str(body.priority) if body.priority else None,
        signposts=tuple(body.signposts),
    )
    return await _act(
        referral_id=referral_id,
        request=request,
        ctx=ctx,
        db=db,
        now=now,
        ruleset=ruleset,
        services=services,
        response=response,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/{referral_id}/withdraw",
    operation_id="referrals-withdraw",
    summary="Withdraw a referral",
    responses=_ACTION_RESPONSES,
)
async def withdraw_referral(
    referral_id: uuid.UUID,
    body: Annotated[WithdrawCreate, WITHDRAW_EXAMPLES],
    ctx: CanSubmitOrTriage,
    db: SessionDep,
    now: ClockDep,
    ruleset: RulesetDep,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> ReferralPublic:
    """Withdraw an open referral (scope `referrals:submit` for your organisation's, or
    `referrals:triage`), with a reason."""
    return await _act(
        referral_id=referral_id,
        request=lifecycle.ActionRequest(Action.withdraw, _reason(body.reason)),
        ctx=ctx,
        db=db,
        now=now,
        ruleset=ruleset,
        services=services,
        response=response,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/{referral_id}/close",
    operation_id="referrals-close",
    summary="Close a referral",
    responses=_ACTION_RESPONSES,
)
async def close_referral(
    referral_id: uuid.UUID,
    body: Annotated[CloseCreate, CLOSE_EXAMPLES],
    ctx: CanTriage,
    db: SessionDep,
    now: ClockDep,
    ruleset: RulesetDep,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> ReferralPublic:
    """Close an accepted or stepped-down referral when the team's work ends (scope
    `referrals:triage`), with a reason."""
    return await _act(
        referral_id=referral_id,
        request=lifecycle.ActionRequest(Action.close, _reason(body.reason)),
        ctx=ctx,
        db=db,
        now=now,
        ruleset=ruleset,
        services=services,
        response=response,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/{referral_id}/history",
    operation_id="referrals-history",
    summary="A referral's history",
    responses=responses(200, 401, 403, 404, 422, 503),
)
async def referral_history(
    referral_id: uuid.UUID, ctx: CanRead, db: SessionDep, now: ClockDep, services: ServicesDep
) -> list[HistoryEntry]:
    """The referral's moves, intake first: status, action, time, organisation and reason code
    (scope `referrals:read` or `referrals:triage`). No comments, no personal data."""
    lines = await queries.read_history(
        session=db,
        ctx=ctx,
        referral_id=str(referral_id),
        now=now.now,
        audit=services.audit_batches,
    )
    return [
        HistoryEntry(
            status=line.status,
            action=line.action,
            at=line.at,
            by_org=line.by_org,
            reason_code=line.reason_code,
        )
        for line in lines
    ]
