"""Post-processing of the generated OpenAPI document: what FastAPI cannot derive on its own.

The committed `openapi/openapi.json` is this function's output (see `api.openapi_export`), so
every change here is a change to the contract and shows up in the drift check.
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from api.openapi_docs import (
    CONTACT,
    CORRELATION_ID_HEADER,
    LICENSE,
    PROBLEM_COMPONENT,
    RATE_LIMIT_HEADERS,
    REQUEST_ID_HEADER,
    SERVERS,
    TAGS,
    response_examples,
    responses,
)
from api.schemas.vocabulary import CODE_LIST_MARK
from eligibility import Ruleset
from service.core.settings import Settings

SECURITY_SCHEME = "HTTPBearer"

# The day the request examples in api.openapi_docs are dated for. A committed document cannot
# move its dates with the calendar, so tests/contract pins the test app's clock to this day and
# checks that every example is accepted on it. Move it (and the examples) forward together.
EXAMPLES_VALID_ON = date(2026, 11, 25)

# Who may call each protected operation. Alternatives are OR-ed (one security requirement
# each); tests/contract checks every entry against the running service, both ways.
REQUIRED_SCOPES: dict[str, tuple[str, ...]] = {
    "referrals-create": ("referrals:submit",),
    "eligibility-check": ("referrals:submit",),
    "referrals-list": ("referrals:read", "referrals:triage"),
    "referrals-get": ("referrals:read", "referrals:triage"),
    "referrals-status": ("referrals:read", "referrals:triage"),
    "audit-events-list": ("audit:read", "audit:read_all"),
    "audit-events-verify": ("audit:read_all",),
    "referrals-triage": ("referrals:triage",),
    "referrals-withdraw": ("referrals:submit", "referrals:triage"),
    "referrals-close": ("referrals:triage",),
    "referrals-history": ("referrals:read", "referrals:triage"),
    "webhook-subscriptions-create": ("webhooks:manage",),
    "webhook-subscriptions-list": ("webhooks:manage",),
    "webhook-subscriptions-delete": ("webhooks:manage",),
    "webhook-subscriptions-rotate-secret": ("webhooks:manage",),
    "webhook-subscriptions-ping": ("webhooks:manage",),
    "webhook-subscriptions-deliveries": ("webhooks:manage",),
    "webhook-subscriptions-deliveries-retry": ("webhooks:manage",),
}

# Followed by stateful testing (schemathesis) and documented for client authors.
LINKS: dict[str, dict[str, dict[str, Any]]] = {
    "referrals-create": {
        "GetReferral": {
            "operationId": "referrals-get",
            "parameters": {"referral_id": "$response.body#/id"},
            "description": "Read the referral just created (its `id`).",
        },
        "GetReferralStatus": {
            "operationId": "referrals-status",
            "parameters": {"referral_id": "$response.body#/id"},
            "description": "Check the status of the referral just created.",
        },
        "ListReferralAuditEvents": {
            "operationId": "audit-events-list",
            "parameters": {"referral_id": "$response.body#/id"},
            "description": "The audit events about the referral just created (scope `audit:read`).",
        },
        "TriageReferral": {
            "operationId": "referrals-triage",
            "parameters": {"referral_id": "$response.body#/id", "header.If-Match": 'W/"1"'},
            "description": "Triage the referral just created (scope `referrals:triage`), with "
            'its first version as If-Match: W/"1".',
        },
        "WithdrawReferral": {
            "operationId": "referrals-withdraw",
            "parameters": {"referral_id": "$response.body#/id", "header.If-Match": 'W/"1"'},
            "description": "Withdraw the referral just created, if it was made in error.",
        },
        "CloseReferral": {
            "operationId": "referrals-close",
            "parameters": {"referral_id": "$response.body#/id"},
            "description": "Close the referral once accepted or stepped down and the work ends.",
        },
        "GetReferralHistory": {
            "operationId": "referrals-history",
            "parameters": {"referral_id": "$response.body#/id"},
            "description": "The referral's history, intake first.",
        },
    },
}

ERRORS_SECTION = """

## Errors

Every error is `application/problem+json` (RFC 9457, schema `Problem`) and carries the
`request_id` that is also in the `X-Request-ID` response header (the service's own id; a
caller's own `X-Request-ID` comes back as `X-Correlation-ID`): malformed JSON **400**, missing
or invalid token **401**, missing scope **403** (both with `WWW-Authenticate`), unknown route or
another organisation's referral **404**, a method the path does not support **405** (with
`Allow`), an `Idempotency-Key` still in flight **409**, a body over the limit (default 64 KiB)
**413**, a body that is not JSON **415**, invalid content **422** (`errors` names each field),
database unavailable **503** (with `Retry-After`). An unexpected failure is a **500** problem that
never carries a stack trace or personal data.

## Rules the schemas cannot express

The service also refuses with 422: a date of birth after today (or `as_of`), an expected due date
outside 14 days ago to 294 days ahead, a consent recorded after today, an NHS number that fails
the Modulus 11 check, a postcode that is not a UK postcode, and codes outside the active ruleset
(listed as `enum`s here and served by `GET /v1/pathway`).
"""


def customise(document: dict[str, Any], ruleset: Ruleset) -> dict[str, Any]:
    """Complete FastAPI's document: problems, security, scopes, headers, links and code lists."""
    document = copy.deepcopy(document)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = copy.deepcopy(PROBLEM_COMPONENT)
    components["parameters"] = {"RequestId": _request_id_parameter()}
    document["info"]["description"] = document["info"].get("description", "") + ERRORS_SECTION
    _security_scheme(components)
    document["info"]["contact"] = copy.deepcopy(CONTACT)
    document["info"]["license"] = copy.deepcopy(LICENSE)
    document["servers"] = copy.deepcopy(SERVERS)
    document["tags"] = copy.deepcopy(TAGS)
    examples = response_examples(ruleset, EXAMPLES_VALID_ON)
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            _always_documented(path, operation)
            _success_example(operation, examples)
    for operation in _operations(document):
        _clean_parameters(operation)
        _idempotency_key(operation)
        _replace_validation_error(operation)
        _authorisation(operation)
        _response_headers(operation)
        operation.setdefault("parameters", []).append({"$ref": "#/components/parameters/RequestId"})
        _links(operation)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _health_ready(document, schemas)
    _referral_body(schemas, ruleset)
    components["schemas"] = _point_at_code_lists(schemas)
    _date_examples(document)
    return document


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in document.get("paths", {}).values() for op in path.values()]


def _request_id_parameter() -> dict[str, Any]:
    return {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Your own id for this request, when it is 1 to 64 of "
        "`A-Z a-z 0-9 . _ : -` (otherwise ignored): echoed in the X-Correlation-ID response "
        "header and kept as the audit event's `correlation_id`. It never becomes the "
        "service's request id, which the service always generates (the X-Request-ID "
        "response header).",
        "schema": {"type": "string"},
    }


def _security_scheme(components: dict[str, Any]) -> None:
    schemes = components.setdefault("securitySchemes", {})
    scheme = schemes.setdefault(SECURITY_SCHEME, {"type": "http", "scheme": "bearer"})
    scheme["bearerFormat"] = "JWT"
    scheme["description"] = (
        "A JWT from your identity provider, signed with RS256 or ES256, with `iss`, `aud`, `exp`, "
        "`sub`, `org` (your organisation code) and `scope` (space-separated: "
        "`referrals:submit`, `referrals:read`, `referrals:triage`, `audit:read`, "
        "`audit:read_all`). Verified as RFC8725 (JWT best current practices) asks: an "
        "allow-list of algorithms (never `none`, never HS256 with a public key), the issuer "
        "and audience checked, `exp` and `iat` required, a maximum lifetime."
    )


def _clean_parameters(operation: dict[str, Any]) -> None:
    """A query, header or path value cannot be JSON null: drop FastAPI's `null` branch."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        branches = schema.get("anyOf")
        if not branches:
            continue
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema.update(kept[0])


def _always_documented(path: str, operation: dict[str, Any]) -> None:
    """Any operation can fail unexpectedly (500); every /v1 operation is rate limited (429)."""
    documented = operation.setdefault("responses", {})
    if path.startswith("/v1/"):
        documented.setdefault("429", responses(429)[429])
        # Sent on the limited routes' answers too (api/rate_limit.py), so a client can slow
        # down before it is refused. Not required: a 413 refused before routing has none.
        for status, response in documented.items():
            if str(status)[0] in "24":
                response.setdefault("headers", {}).update(copy.deepcopy(RATE_LIMIT_HEADERS))
    documented.setdefault("500", responses(500)[500])


def _success_example(operation: dict[str, Any], examples: dict[str, Any]) -> None:
    example = examples.get(operation.get("operationId", ""))
    if example is None:
        return
    success = next(s for s in operation["responses"] if s.startswith("2"))
    media = operation["responses"][success]["content"]["application/json"]
    media["example"] = copy.deepcopy(example)


def _idempotency_key(operation: dict[str, Any]) -> None:
    # Said here, from the setting itself, so the text cannot drift from the default again.
    hours = Settings.model_fields["idempotency_ttl_hours"].default
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "Idempotency-Key":
            parameter["description"] = (
                "Your key for this request (1 to 255 printable ASCII characters, e.g. a "
                "UUID). The same key with the same body returns the first response again "
                "(with `Idempotent-Replayed: true`), even if the referral has moved since; "
                "with another body, 422; while the first is in flight, 409. Keys are kept "
                f"for {hours} hours by default "
                "(`REFERRAL_IDEMPOTENCY_TTL_HOURS`, never less than 24)."
            )


def _replace_validation_error(operation: dict[str, Any]) -> None:
    """The service renders every 422 as problem+json, never FastAPI's HTTPValidationError."""
    found = operation.get("responses", {}).get("422")
    if found is not None and "application/problem+json" not in found.get("content", {}):
        operation["responses"]["422"] = responses(422)[422]


def _authorisation(operation: dict[str, Any]) -> None:
    """Scopes as role lists on the security requirements (OpenAPI 3.1), and in the text."""
    scopes = REQUIRED_SCOPES.get(operation.get("operationId", ""))
    if not operation.get("security"):
        # Explicit, so that no tool assumes a document-wide default applies.
        operation["security"] = []
        who = "No authentication: anyone who can reach the service may call it."
    elif scopes:
        operation["security"] = [{SECURITY_SCHEME: [scope]} for scope in scopes]
        listed = " or ".join(f"`{scope}`" for scope in scopes)
        who = f"Needs a bearer JWT with the scope {listed}."
    else:
        return  # a protected operation nobody has described: tests/contract fails on it
    description = operation.get("description", "").rstrip()
    operation["description"] = f"{description}\n\n**Who may call it:** {who}".lstrip()


def _response_headers(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = {**REQUEST_ID_HEADER["X-Request-ID"], "required": True}
        headers["X-Correlation-ID"] = dict(CORRELATION_ID_HEADER["X-Correlation-ID"])
        if status in ("401", "403") and "WWW-Authenticate" in headers:
            headers["WWW-Authenticate"]["required"] = True
        if status in ("429", "503"):
            headers["Retry-After"] = {
                "description": "Seconds to wait before trying again.",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        if status == "201" and "Location" in headers:
            headers["Location"]["required"] = True
            headers["Idempotent-Replayed"] = {
                "description": "`true` when this is the stored response to an earlier request "
                "with the same Idempotency-Key and body.",
                "schema": {"type": "string", "enum": ["true"]},
            }


def _links(operation: dict[str, Any]) -> None:
    links = LINKS.get(operation.get("operationId", ""))
    if not links:
        return
    success = next(s for s in operation["responses"] if s.startswith("2"))
    operation["responses"][success]["links"] = copy.deepcopy(links)


def _health_ready(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """`/health/ready` answers JSON on both outcomes; FastAPI only knows it returns Any."""
    schemas["Readiness"] = {
        "type": "object",
        "title": "Readiness",
        "additionalProperties": False,
        "required": ["status", "database", "schema"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "database": {"type": "string", "enum": ["ok", "unreachable", "not_migrated"]},
            "schema": {
                "type": ["string", "null"],
                "description": "The database's migration revision, when it could be read.",
            },
        },
    }
    for operation in _operations(document):
        if operation.get("operationId") != "health-ready":
            continue
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
        for status, response in operation["responses"].items():
            if status not in ("200", "503"):
                continue  # an unexpected failure is still a problem
            response["content"] = copy.deepcopy(content)
            if status == "200":
                response["description"] = "Ready: the database answers and is migrated."


def _referral_body(schemas: dict[str, Any], ruleset: Ruleset) -> None:
    """The code lists are the active ruleset's: the schemas point at these two components."""
    concern_codes = [*ruleset.relationship_concern_codes, *ruleset.other_concern_codes]
    risk_factors = [*ruleset.severe_risk_factors, *ruleset.other_risk_factors]
    schemas["ConcernCode"] = {
        "type": "string",
        "title": "ConcernCode",
        "description": f"A concern code of ruleset {ruleset.id} {ruleset.version} "
        "(labels and groups: GET /v1/pathway).",
        "enum": concern_codes,
    }
    schemas["RiskFactorCode"] = {
        "type": "string",
        "title": "RiskFactorCode",
        "description": f"A risk-factor code of ruleset {ruleset.id} {ruleset.version} "
        "(labels and weights: GET /v1/pathway).",
        "enum": risk_factors,
    }


def _point_at_code_lists(node: Any) -> Any:
    """Every schema marked with CODE_LIST_MARK becomes a $ref to its code-list component."""
    if isinstance(node, dict):
        if CODE_LIST_MARK in node:
            ref: dict[str, Any] = {"$ref": f"#/components/schemas/{node[CODE_LIST_MARK]}"}
            if "description" in node:
                ref["description"] = node["description"]
            return ref
        return {key: _point_at_code_lists(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_point_at_code_lists(value) for value in node]
    return node


def _date_examples(document: dict[str, Any]) -> None:
    note = (
        f"Dated for {EXAMPLES_VALID_ON.isoformat()}: on another day, move the dates with the "
        "calendar (a date of birth may not be after today; an expected due date must be from 14 "
        "days ago to 294 days ahead)."
    )
    for operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        for media in content.values():
            for example in media.get("examples", {}).values():
                example["description"] = note
