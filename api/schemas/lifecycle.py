"""Request and response schemas for the moves after intake (lifecycle.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, field_validator

from api.schemas.common import Code, RequestModel, ResponseModel
from api.schemas.vocabulary import Outcome, Priority

Comment = Annotated[
    str,
    Field(
        max_length=2000,
        description="Free text: personal data, returned only with the whole referral (never "
        "in status, history, lists, audit, logs or notifications).",
    ),
]


class ReasonCreate(RequestModel):
    code: Code = Field(description="A reason code of the ruleset (GET /v1/pathway, `lifecycle`).")
    comment: Comment | None = None


class TriageCreate(RequestModel):
    """A clinician's triage: confirm the rules' outcome and priority, or override them."""

    outcome: Outcome
    priority: Priority | None = Field(
        default=None, description="Default: the priority the rules gave."
    )
    reason: ReasonCreate | None = Field(
        default=None,
        description="Required when the outcome or priority differs from the rules' (an "
        "override); optional when confirming.",
    )
    signposts: list[Code] = Field(
        default_factory=list,
        max_length=20,
        description="Service ids from the ruleset's directory: required for `signpost`.",
        json_schema_extra={"uniqueItems": True},
    )

    @field_validator("signposts")
    @classmethod
    def _no_repeats(cls, ids: list[str]) -> list[str]:
        if len(set(ids)) != len(ids):
            raise ValueError("signposts must not repeat")
        return ids


class WithdrawCreate(RequestModel):
    """The referrer (or the team) withdraws a referral that is still open."""

    reason: ReasonCreate


class CloseCreate(RequestModel):
    """The team closes a referral when its work ends."""

    reason: ReasonCreate


class MoveReason(ResponseModel):
    """A move's reason: a code of the ruleset and, maybe, a comment (personal data)."""

    code: str
    comment: str | None = None


class ActedBy(ResponseModel):
    """Who made a move: the client or clinician (`sub`) and their organisation."""

    sub: str
    org: str


class TriagePublic(ResponseModel):
    """The clinician's decision, kept beside the rules' (which never changes)."""

    outcome: Outcome
    priority: Priority
    decided_at: datetime
    decided_by: ActedBy
    agrees_with_rules: bool
    reason: MoveReason | None = None
    signposts: list[dict[str, str | None]] = Field(default_factory=list)


class MovePublic(ResponseModel):
    """A withdrawal or closure: when, by whom, and why."""

    at: datetime
    by: ActedBy
    reason: MoveReason | None = None


class HistoryEntry(ResponseModel):
    """One line of a referral's history; the intake comes first. No personal data."""

    status: str
    action: str
    at: datetime
    by_org: str
    reason_code: str | None
