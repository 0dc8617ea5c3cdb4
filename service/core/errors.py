"""Domain errors that carry their HTTP meaning; api/ renders each as problem+json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field: a dotted path into the request body and a reason with no personal data."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class AuditNote:
    """What the session owner records when a refusal must still leave an audit event."""

    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    details: dict[str, Any] | None = None


class DomainError(Exception):
    status: int = 500
    title: str = "Internal Server Error"
    type_slug: str = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        # Set when the refusal itself is an auditable action (e.g. access denied).
        self.audit: AuditNote | None = None
        # Extra problem members (RFC 9457 extensions), e.g. the current version on a 412.
        self.members: dict[str, object] = {}
        # Extra response headers, e.g. the current ETag on a 412.
        self.headers: dict[str, str] = {}


class InvalidContent(DomainError):
    status = 422
    title = "Unprocessable Content"
    type_slug = "validation"

    def __init__(
        self, problems: list[FieldProblem], detail: str = "The request is not valid."
    ) -> None:
        super().__init__(detail)
        self.problems = problems


class Unauthenticated(DomainError):
    status = 401
    title = "Unauthorized"
    type_slug = "invalid-token"


class NotFound(DomainError):
    status = 404
    title = "Not Found"
    type_slug = "not-found"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"
    type_slug = "insufficient-scope"


class Conflict(DomainError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class IllegalTransition(Conflict):
    """The move table does not allow this action from the referral's current status."""

    type_slug = "illegal-transition"

    def __init__(self, detail: str, *, current_status: str, allowed_actions: list[str]) -> None:
        super().__init__(detail)
        self.members = {"current_status": current_status, "allowed_actions": allowed_actions}


class PreconditionRequired(DomainError):
    status = 428
    title = "Precondition Required"
    type_slug = "precondition-required"


class StaleVersion(DomainError):
    status = 412
    title = "Precondition Failed"
    type_slug = "stale-version"

    def __init__(self, detail: str, *, current_version: int) -> None:
        super().__init__(detail)
        self.members = {"current_version": current_version}
        self.headers = {"ETag": f'W/"{current_version}"'}


class Unavailable(DomainError):
    status = 503
    title = "Service Unavailable"
    type_slug = "unavailable"


def audited(error: DomainError, note: AuditNote) -> DomainError:
    """Attach the audit note for a refusal and return the error, ready to raise."""
    error.audit = note
    return error
