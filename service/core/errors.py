"""Domain errors that carry their HTTP meaning; api/ renders each as problem+json."""

from __future__ import annotations

from dataclasses import dataclass


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
    details: dict[str, str] | None = None


class DomainError(Exception):
    status: int = 500
    title: str = "Internal Server Error"
    type_slug: str = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        # Set when the refusal itself is an auditable action (e.g. access denied).
        self.audit: AuditNote | None = None


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


class Unavailable(DomainError):
    status = 503
    title = "Service Unavailable"
    type_slug = "unavailable"


def audited(error: DomainError, note: AuditNote) -> DomainError:
    """Attach the audit note for a refusal and return the error, ready to raise."""
    error.audit = note
    return error
