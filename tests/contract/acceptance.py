"""Making schema-valid requests acceptable where the service's rules go beyond the schema.

Schemathesis' positive_data_acceptance check says: a request that the document calls valid
must not be refused. A few rules cannot be written in JSON Schema, so a positive case is
repaired before it is sent, and only in these ways (each a rule the document states in words):

- dates relative to "today" (or the dry run's `as_of`): a date of birth not after it, an
  expected due date from 14 days before to 294 days after it, consent not recorded after it;
- NHS numbers must pass the Modulus 11 check; postcodes must be real UK postcodes;
- a list `cursor` (referrals or audit events) must be one the service issued (it is opaque):
  positive cases drop it;
- an `Idempotency-Key` reused with a different body is refused (422, as documented): positive
  cases get a fresh key each, so two generated bodies never share one by chance;
- a webhook subscription's `url` must be `https://`, name a host (no credentials, a valid
  port) that resolves to public addresses only: positive cases get such a URL;
- the moves (triage, withdraw, close) take reason codes and signposting services of the
  ruleset, and a triage that differs from the rules' decision needs a reason (which depends on
  the referral, not on the body): positive cases get a reason code of the ruleset for their
  move, always a reason for triage, and a known service exactly when the outcome is signpost.

Negative cases are never touched: they must still be refused.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemathesis import Case, GenerationMode

from eligibility import default_ruleset
from service.referrals.validation import (
    DUE_DATE_FUTURE_DAYS,
    DUE_DATE_PAST_DAYS,
    normalise_nhs_number,
    normalise_postcode,
)

VALID_NHS_NUMBER = "9434765919"
VALID_POSTCODE = "OX4 1AA"
REFERRAL_BODY_OPERATIONS = frozenset({"referrals-create", "eligibility-check"})
CURSOR_OPERATIONS = frozenset({"referrals-list", "audit-events-list"})
_RULESET = default_ruleset()
MOVE_REASONS = {
    "referrals-triage": _RULESET.lifecycle_reasons["triage"][0],
    "referrals-withdraw": _RULESET.lifecycle_reasons["withdraw"][0],
    "referrals-close": _RULESET.lifecycle_reasons["close"][0],
}
A_SERVICE = _RULESET.services[0].id
WEBHOOK_URL = "https://hooks.partner.example/referrals"


def london_today() -> date:
    return datetime.now(ZoneInfo("Europe/London")).date()


def is_positive(case: Case) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode == GenerationMode.POSITIVE


def make_acceptable(case: Case, today: date) -> Case:
    """Repair a positive case in place (see the module docstring) and return it."""
    if not is_positive(case):
        return case
    operation_id = case.operation.definition.raw.get("operationId")
    if operation_id in CURSOR_OPERATIONS and isinstance(case.query, MutableMapping):
        case.query.pop("cursor", None)
    if isinstance(case.headers, MutableMapping) and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    if operation_id in REFERRAL_BODY_OPERATIONS and isinstance(case.body, dict):
        as_of = _as_of(case) or today
        _repair_referral(case.body, as_of)
    if operation_id in MOVE_REASONS and isinstance(case.body, dict):
        _repair_move(operation_id, case.body)
    if operation_id == "webhook-subscriptions-create" and isinstance(case.body, dict):
        case.body["url"] = WEBHOOK_URL
    return case


def _repair_move(operation_id: str, body: dict[str, Any]) -> None:
    reason = body.get("reason")
    if isinstance(reason, dict) or operation_id == "referrals-triage":
        body["reason"] = {**(reason if isinstance(reason, dict) else {}), "code": ""}
        body["reason"]["code"] = MOVE_REASONS[operation_id]
    if operation_id == "referrals-triage":
        body["signposts"] = [A_SERVICE] if body.get("outcome") == "signpost" else []


def _as_of(case: Case) -> date | None:
    value = case.query.get("as_of") if isinstance(case.query, MutableMapping) else None
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _repair_referral(body: dict[str, Any], as_of: date) -> None:
    infant = body.get("infant")
    if isinstance(infant, dict):
        _clamp(infant, "date_of_birth", None, as_of)
        _clamp(
            infant,
            "expected_due_date",
            as_of - timedelta(days=DUE_DATE_PAST_DAYS),
            as_of + timedelta(days=DUE_DATE_FUTURE_DAYS),
        )
        _valid_nhs_number(infant)
    consent = body.get("consent")
    if isinstance(consent, dict):
        _clamp(consent, "recorded_on", None, as_of)
    for caregiver in body.get("caregivers") or ():
        if isinstance(caregiver, dict):
            _valid_nhs_number(caregiver)
    postcode = body.get("postcode")
    if isinstance(postcode, str):
        try:
            normalise_postcode(postcode.strip())
        except ValueError:
            body["postcode"] = VALID_POSTCODE


def _clamp(holder: dict[str, Any], key: str, earliest: date | None, latest: date) -> None:
    value = holder.get(key)
    if not isinstance(value, str):
        return
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return
    if day > latest:
        day = latest
    if earliest is not None and day < earliest:
        day = earliest
    holder[key] = day.isoformat()


def _valid_nhs_number(holder: dict[str, Any]) -> None:
    value = holder.get("nhs_number")
    if not isinstance(value, str):
        return
    try:
        normalise_nhs_number(value.strip())
    except ValueError:
        holder["nhs_number"] = VALID_NHS_NUMBER
