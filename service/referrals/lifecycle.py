"""The referral's moves after intake (lifecycle.md): triage, withdraw and close.

Every move is checked in the contract's order: the referral must be visible to the caller
(404), a repeated Idempotency-Key replays the first answer, `If-Match` must be sent (428) and
name the current version (412), the move table must allow the action from the current status
(409), and the body must make sense for it (422). The move, its history line, its audit event
and its key are written in the caller's unit of work; the UPDATE is guarded by the version,
so of two clinicians acting at once on two instances exactly one wins and the other gets 412.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from eligibility import Signpost
from service.audit import chain
from service.auth.scopes import SCOPE_SUBMIT, SCOPE_TRIAGE
from service.core import events as domain_events
from service.core.canonical import canonical_json, sha256_hex
from service.core.context import Caller, RequestContext
from service.core.errors import (
    AuditNote,
    FieldProblem,
    IllegalTransition,
    InvalidContent,
    PreconditionRequired,
    StaleVersion,
    audited,
)
from service.referrals import events, idempotency, repository
from service.referrals.queries import get_visible_referral
from service.referrals.record import ReferralRecord, as_answered, response_snapshot
from service.referrals.statuses import MOVES, Action, Move, ReferralStatus

AUDIT_ACTIONS = {
    Action.triage: "referral.triaged",
    Action.withdraw: "referral.withdrawn",
    Action.close: "referral.closed",
}


@dataclass(frozen=True, slots=True)
class ReasonCodes:
    """The reason codes the ruleset's [lifecycle] table allows for each action."""

    triage: frozenset[str]
    withdraw: frozenset[str]
    close: frozenset[str]

    def for_action(self, action: Action) -> frozenset[str]:
        return {Action.triage: self.triage, Action.withdraw: self.withdraw}.get(action, self.close)


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    comment: str | None = None  # personal data: only ever shown with the whole referral

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "comment": self.comment}


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """What the caller asks for. For triage: the clinician's outcome, priority, signposts."""

    action: Action
    reason: Reason | None
    outcome: str | None = None
    priority: str | None = None
    signposts: tuple[str, ...] = ()

    def fingerprint(self, referral_id: str) -> str:
        """What an Idempotency-Key is bound to: this action, on this referral, with this body."""
        return sha256_hex(
            canonical_json(
                {
                    "referral_id": referral_id,
                    "action": str(self.action),
                    "reason": self.reason.to_dict() if self.reason else None,
                    "outcome": self.outcome,
                    "priority": self.priority,
                    "signposts": list(self.signposts),
                }
            )
        )


@dataclass(frozen=True, slots=True)
class Acted:
    referral: ReferralRecord
    move: Move | None  # None for a replay
    replayed: bool
    agrees_with_rules: bool | None = None


def may_take(caller: Caller, referral: ReferralRecord, action: Action) -> bool:
    """Whether this caller may take `action` on this referral at all (status aside)."""
    if caller.has(SCOPE_TRIAGE):
        return True
    return action is Action.withdraw and caller.has(SCOPE_SUBMIT) and caller.org == referral.org


def available_actions(caller: Caller, referral: ReferralRecord) -> list[str]:
    """The actions this caller may take now: the move table, narrowed by who is asking."""
    status = ReferralStatus(referral.status)
    return [
        str(action)
        for action in Action
        if any(m.source is status and m.action is action for m in MOVES)
        and may_take(caller, referral, action)
    ]


async def act(
    *,
    session: AsyncSession,
    ctx: RequestContext,
    referral_id: str,
    request: ActionRequest,
    if_match: int | None,
    codes: ReasonCodes,
    directory: Mapping[str, Signpost],
    now: datetime,
    idempotency_key: str | None,
    idempotency_ttl: timedelta,
) -> Acted:
    action = request.action
    audit_action = AUDIT_ACTIONS[action]
    db = await session.connection()
    referral = await get_visible_referral(
        db=db, ctx=ctx, referral_id=referral_id, action=audit_action
    )

    claim = None
    if idempotency_key is not None:
        claim = await idempotency.claim(
            db,
            org=ctx.caller.org,
            key=idempotency_key,
            request_sha256=request.fingerprint(referral.id),
            now=now,
            ttl=idempotency_ttl,
        )
        if claim.replay is not None:
            # The first answer, even though the referral has moved on since.
            answered = as_answered(referral, claim.replay.response)
            await _audit(db, ctx, audit_action, answered, outcome="replayed", now=now)
            return Acted(answered, None, replayed=True)

    def refused(error: Any, why: str) -> Any:
        details = {"reason": why, "status": referral.status, "version": referral.version}
        return audited(error, AuditNote(audit_action, "referral", referral.id, "refused", details))

    if if_match is None:
        raise refused(
            PreconditionRequired(
                f'Send If-Match with the referral\'s ETag (W/"{referral.version}") to {action}.'
            ),
            "precondition_required",
        )
    if if_match != referral.version:
        raise refused(
            StaleVersion(
                "The referral has changed since you read it; read it again and retry.",
                current_version=referral.version,
            ),
            "stale_version",
        )
    move = _find_move(referral, request)
    if move is None:
        allowed = available_actions(ctx.caller, referral)
        raise refused(
            IllegalTransition(
                f"A referral that is {referral.status} cannot be {action}d"
                + (" to that outcome." if action is Action.triage else "."),
                current_status=referral.status,
                allowed_actions=allowed,
            ),
            "illegal_transition",
        )
    changes, agrees = _changes(referral, request, move, ctx, codes, directory, now)
    moved = await repository.apply_move(
        db, referral, changes=changes, expected_version=if_match, now=now
    )
    if moved is None:
        # Another request moved it between our read and our update (another instance).
        current = await repository.find(db, referral.id)
        raise refused(
            StaleVersion(
                "The referral has changed since you read it; read it again and retry.",
                current_version=current.version if current else referral.version + 1,
            ),
            "stale_version",
        )
    await repository.insert_move(
        db,
        referral_id=moved.id,
        version=moved.version,
        action=str(action),
        from_status=referral.status,
        to_status=moved.status,
        at=now,
        by_org=ctx.caller.org,
        reason_code=request.reason.code if request.reason else None,
    )
    if claim is not None:
        key = claim.row(referral_id=moved.id, now=now, response=response_snapshot(moved))
        await repository.insert_key(db, key)
    details: dict[str, Any] = {
        "from_status": referral.status,
        "to_status": moved.status,
        "version": moved.version,
        "reason_code": request.reason.code if request.reason else None,
    }
    if action is Action.triage:
        details.update(outcome=moved.outcome, priority=moved.priority, agrees_with_rules=agrees)
    await _audit(db, ctx, audit_action, moved, outcome="success", now=now, details=details)
    await domain_events.publish(session, events.status_changed(moved, referral.status, now))
    return Acted(moved, move, replayed=False, agrees_with_rules=agrees)


def _find_move(referral: ReferralRecord, request: ActionRequest) -> Move | None:
    status = ReferralStatus(referral.status)
    for move in MOVES:
        if move.source is status and move.action is request.action:
            if move.outcome is None or move.outcome == request.outcome:
                return move
    return None


def _changes(
    referral: ReferralRecord,
    request: ActionRequest,
    move: Move,
    ctx: RequestContext,
    codes: ReasonCodes,
    directory: Mapping[str, Signpost],
    now: datetime,
) -> tuple[dict[str, Any], bool | None]:
    """The columns the move sets, after checking the body makes sense for it (422)."""
    problems: list[FieldProblem] = []
    reason = request.reason
    if reason is not None and reason.code not in codes.for_action(request.action):
        problems.append(
            FieldProblem("reason.code", f"is not a {request.action} reason code of the ruleset")
        )
    by = {"sub": ctx.caller.sub, "org": ctx.caller.org}
    record: dict[str, Any] = {
        "at": now.isoformat(),
        "by": by,
        "reason": reason.to_dict() if reason else None,
    }
    changes: dict[str, Any] = {"status": str(move.target)}
    agrees: bool | None = None
    if request.action is Action.triage:
        rules = referral.decision
        priority = request.priority or str(rules["priority"])
        agrees = request.outcome == rules["outcome"] and priority == rules["priority"]
        if not agrees and reason is None:
            problems.append(
                FieldProblem("reason", "is required when the outcome or priority differs")
            )
        signposts = _signposts(request, directory, problems)
        record = {
            "outcome": request.outcome,
            "priority": priority,
            "decided_at": now.isoformat(),
            "decided_by": by,
            "agrees_with_rules": agrees,
            "reason": reason.to_dict() if reason else None,
            "signposts": signposts,
        }
        changes.update(triage=record, outcome=request.outcome, priority=priority, provisional=False)
    elif request.action is Action.withdraw:
        if reason is None:
            problems.append(FieldProblem("reason", "is required"))
        changes["withdrawal"] = record
    else:
        if reason is None:
            problems.append(FieldProblem("reason", "is required"))
        changes["closure"] = record
    if problems:
        raise InvalidContent(problems)
    return changes, agrees


def _signposts(
    request: ActionRequest, directory: Mapping[str, Signpost], problems: list[FieldProblem]
) -> list[dict[str, Any]]:
    if request.outcome != "signpost":
        if request.signposts:
            problems.append(FieldProblem("signposts", "are only for the outcome signpost"))
        return []
    if not request.signposts:
        problems.append(FieldProblem("signposts", "must name at least one service to signpost"))
    chosen = []
    for index, service_id in enumerate(request.signposts):
        service = directory.get(service_id)
        if service is None:
            problems.append(FieldProblem(f"signposts[{index}]", "is not a service of the ruleset"))
        else:
            chosen.append(service.to_dict())
    return chosen


async def _audit(
    db: AsyncConnection,
    ctx: RequestContext,
    action: str,
    referral: ReferralRecord,
    *,
    outcome: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    await chain.append(
        db,
        ctx,
        action=action,
        resource_type="referral",
        resource_id=referral.id,
        outcome=outcome,
        now=now,
        details=details or {"version": referral.version, "status": referral.status},
    )
