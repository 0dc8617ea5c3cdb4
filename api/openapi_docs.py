"""What the OpenAPI document says beyond the schemas: error responses, headers and examples."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import Body

from api.problems import MAX_LISTED_PROBLEMS
from eligibility import Ruleset

PROBLEM_SCHEMA_REF = {"$ref": "#/components/schemas/Problem"}
REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "Echoes the caller's X-Request-ID when sane, else a generated id.",
        "schema": {"type": "string"},
    }
}

# The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers), sent by the limits.
RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {
        "description": "The limits that apply, one per policy: `org` (your organisation), "
        "`submit` (your organisation's submissions) or `address` (requests without a valid "
        'token), e.g. `"org";q=600;w=60` (600 requests per window of 60 seconds).',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of each, e.g. `"org";r=12;t=34` (12 requests left, '
        "the window resets in 34 seconds).",
        "schema": {"type": "string"},
    },
}

_DESCRIPTIONS = {
    400: "Malformed JSON.",
    401: "Missing or invalid bearer token.",
    403: "The token lacks the scope this operation needs.",
    404: "No such resource (also for another organisation's referral).",
    405: "Method not allowed.",
    409: "A request with the same Idempotency-Key is still in progress, or (type "
    "`illegal-transition`) the referral's status does not allow this action: "
    "`current_status` and `allowed_actions` say what does.",
    412: "`If-Match` does not name the referral's current version (type `stale-version`): "
    "`current_version` and the `ETag` header give it; read the referral again.",
    428: "`If-Match` is required: send the `ETag` of your last read of the referral.",
    413: "The body is larger than the limit (default 64 KiB).",
    415: "The body is not application/json.",
    422: "The request is not valid: `errors` names each field and the reason.",
    429: "Too many requests from your organisation (or, before authentication, your address); "
    "retry after the given number of seconds.",
    500: "An unexpected failure; the problem carries no stack trace or personal data. Quote its "
    "`request_id` when you report it.",
    503: "The database is unavailable; retry after the given number of seconds.",
}


def _problem(status: int) -> dict[str, Any]:
    headers: dict[str, Any] = dict(REQUEST_ID_HEADER)
    if status in (401, 403):
        headers["WWW-Authenticate"] = {
            "description": "Bearer challenge, with error=invalid_token or insufficient_scope.",
            "schema": {"type": "string"},
        }
    if status in (429, 503):
        headers["Retry-After"] = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
    if status == 429:
        headers.update(RATE_LIMIT_HEADERS)
    return {
        "description": _DESCRIPTIONS[status],
        "headers": headers,
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA_REF}},
    }


def responses(*statuses: int, created: bool = False) -> dict[int | str, dict[str, Any]]:
    """The documented responses of an operation: the success one and each problem it can give."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status < 400:
            headers = dict(REQUEST_ID_HEADER)
            if created:
                headers["Location"] = {
                    "description": "The new referral's URL.",
                    "schema": {"type": "string"},
                }
            documented[status] = {"headers": headers}
        else:
            documented[status] = _problem(status)
    return documented


def _referral(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "referrer": {
            "name": "Sam Carter",
            "role": "health_visitor",
            "email": "sam.carter@nhs.example",
            "phone": "01865 000000",
        },
        "infant": {
            "given_name": "Alex",
            "family_name": "Doe",
            "nhs_number": "9434765919",
            "date_of_birth": "2026-06-01",
        },
        "caregivers": [
            {
                "given_name": "Jo",
                "family_name": "Doe",
                "relationship": "mother",
                "phone": "07700 900000",
            }
        ],
        "postcode": "OX4 1AA",
        "concerns": {
            "codes": ["bonding_difficulties", "negative_feelings_towards_infant"],
            "description": "Mother finds it hard to feel close to the baby.",
            "duration_weeks": 6,
        },
        "risk_factors": ["domestic_abuse"],
        "safeguarding": {
            "immediate_risk": False,
            "child_protection_plan": False,
            "child_in_need_plan": False,
        },
        "diagnosis": None,
        "consent": {"caregiver_consent": True, "recorded_on": "2026-11-20"},
        "referrer_urgency": "routine",
        "services_involved": ["health_visiting"],
    }
    base.update(changes)
    return base


REFERRAL_EXAMPLES = Body(
    openapi_examples={
        "eligible": {
            "summary": "Eligible: a relationship concern with risk factors (step up)",
            "value": _referral(),
        },
        "antenatal": {
            "summary": "Antenatal: expected due date instead of date of birth",
            "value": _referral(
                infant={"family_name": "Doe", "expected_due_date": "2027-02-14"},
                concerns={
                    "codes": ["birth_trauma_or_loss_affecting_relationship"],
                    "duration_weeks": 2,
                },
                risk_factors=[],
                services_involved=["midwifery"],
            ),
        },
        "signposted": {
            "summary": "Signposted: no relationship concern (feeding only)",
            "value": _referral(concerns={"codes": ["feeding_only"]}, risk_factors=[]),
        },
    }
)

PROBLEM_COMPONENT: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail", "instance", "request_id"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "maxItems": MAX_LISTED_PROBLEMS,
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "errors_omitted": {
            "type": "integer",
            "minimum": 1,
            "description": f"How many problems were found beyond the {MAX_LISTED_PROBLEMS} "
            "listed in `errors`.",
        },
    },
}


# Declared once, with the text a partner's generated client and the docs show for each group.
TAGS: list[dict[str, str]] = [
    {
        "name": "referrals",
        "description": "Submit a referral and follow it: the whole record, its status without "
        "personal data, and lists of your organisation's referrals.",
    },
    {
        "name": "eligibility",
        "description": "A dry run of the rules on a referral body; nothing is stored.",
    },
    {
        "name": "pathway",
        "description": "The active ruleset: criteria, outcomes, code lists with labels, reason "
        "codes, signposting services and the glossary. Build pick lists from it.",
    },
    {
        "name": "lifecycle",
        "description": "What happens after intake: the team's triage, withdrawal and closure "
        "(each needs `If-Match` with the referral's ETag), and the referral's history.",
    },
    {
        "name": "webhooks",
        "description": "Signed webhooks (Standard Webhooks v1): subscribe a URL of your "
        "organisation's to referral events, rotate its secret, ping it, and see and retry its "
        "deliveries. Messages carry ids, codes and flags only; `links.status` reads the rest.",
    },
    {
        "name": "audit",
        "description": "The tamper-evident audit trail: read it and verify its hash chains.",
    },
    {
        "name": "health",
        "description": "Liveness and readiness for orchestrators and load balancers "
        "(metrics are on a port of their own).",
    },
]

CONTACT = {
    "name": "Parent-infant referral service: integration support",
    "url": "https://referrals.example.nhs.uk/support",
    "email": "referrals-integration@example.nhs.uk",
}
LICENSE = {
    "name": "Proprietary: for partner organisations under the team's data-sharing agreement",
    "url": "https://referrals.example.nhs.uk/terms",
}
SERVERS = [
    {
        "url": "https://{host}",
        "description": "Production, or one of your test environments: the team's deployment "
        "of the service, HTTPS only.",
        # Called by partner organisations' systems over the network, not an internal API.
        "x-internal": False,
        "variables": {
            "host": {
                "default": "referrals.example.nhs.uk",
                "description": "The host name your team's deployment is served at.",
            }
        },
    }
]


def response_examples(ruleset: Ruleset, valid_on: date) -> dict[str, Any]:
    """Success-response examples by operation id, made from the first request example by the
    real rules on `valid_on`, so every value is one the service would really send."""
    from api.schemas.referrals import ReferralCreate
    from eligibility import evaluate

    body = ReferralCreate.model_validate(_referral())
    decision = evaluate(body.to_facts(), ruleset, valid_on).to_dict()
    received = f"{valid_on.isoformat()}T09:14:03.215000Z"
    identity = {"id": "0b6f8a3e-5c2d-4e71-9a3b-2f4c6d8e1a57", "reference": "PIR-7K3M-Q9XD"}
    status = {
        **identity,
        "status": "awaiting_triage",
        "outcome": decision["outcome"],
        "priority": decision["priority"],
        "provisional": True,
        "safeguarding_alert": decision["safeguarding_alert"],
    }
    referral = {
        **identity,
        "organisation": "RX1",
        "status": "awaiting_triage",
        "version": 1,
        "provisional": True,
        "available_actions": ["withdraw"],  # as the referrer sees it
        "received_at": received,
        "updated_at": received,
        "triage": None,
        "withdrawal": None,
        "closure": None,
        "possible_duplicates": [],
        **body.model_dump(mode="json"),
        "decision": decision,
    }
    summary = {
        **status,
        "organisation": "RX1",
        "version": 1,
        "waiting_days": 0,
        "received_at": received,
        "updated_at": received,
    }
    decided = f"{valid_on.isoformat()}T11:02:47.530000Z"
    triaged = {
        **referral,
        "status": "accepted",
        "version": 2,
        "provisional": False,
        "available_actions": ["withdraw", "close"],  # as the team sees it
        "updated_at": decided,
        "triage": {
            "outcome": decision["outcome"],
            "priority": decision["priority"],
            "decided_at": decided,
            "decided_by": {"sub": "clinician-7f3a", "org": "PIT01"},
            "agrees_with_rules": True,
            "reason": None,
            "signposts": [],
        },
    }
    moved = {"at": decided, "by": {"sub": "hv-system", "org": "RX1"}}
    withdrawn = {
        **referral,
        "status": "withdrawn",
        "version": 2,
        "available_actions": [],
        "updated_at": decided,
        "withdrawal": {**moved, "reason": {"code": "referred_elsewhere", "comment": None}},
    }
    closed = {
        **triaged,
        "status": "closed",
        "version": 3,
        "available_actions": [],
        "closure": {
            "at": decided,
            "by": {"sub": "clinician-7f3a", "org": "PIT01"},
            "reason": {"code": "intervention_completed", "comment": None},
        },
    }
    return {
        "referrals-create": referral,
        "referrals-get": referral,
        "referrals-status": {
            **status,
            "version": 1,
            "available_actions": ["withdraw"],
            "triaged_at": None,
            "next_steps": decision["next_steps"],
            "signposts": decision["signposts"],
            "updated_at": received,
        },
        "referrals-list": {"items": [summary], "next_cursor": None},
        "referrals-triage": triaged,
        "referrals-withdraw": withdrawn,
        "referrals-close": closed,
        "referrals-history": [
            {
                "status": "awaiting_triage",
                "action": "intake",
                "at": received,
                "by_org": "RX1",
                "reason_code": None,
            },
            {
                "status": "accepted",
                "action": "triage",
                "at": decided,
                "by_org": "PIT01",
                "reason_code": None,
            },
        ],
        "eligibility-check": decision,
        "pathway-get": ruleset.describe(),
        "health-live": {"status": "ok"},
    }
