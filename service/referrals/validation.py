"""Checks on identifiers and dates that pydantic cannot express alone. Messages never echo input."""

from __future__ import annotations

import re
from datetime import date, timedelta

from service.core.errors import FieldProblem

# The UK postcode grammar (BS 7666), covering every current postcode and GIR 0AA.
_POSTCODE = re.compile(
    r"^(GIR0AA|"
    r"(?:[A-PR-UWYZ][0-9]{1,2}|[A-PR-UWYZ][A-HK-Y][0-9]{1,2}|[A-PR-UWYZ][0-9][A-HJKPSTUW]"
    r"|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])[0-9][ABD-HJLNP-UW-Z]{2})$"
)
_NHS_SEPARATORS = re.compile(r"[\s-]")

DUE_DATE_PAST_DAYS = 14
DUE_DATE_FUTURE_DAYS = 294  # 42 weeks: the longest pregnancy still referred antenatally


def normalise_postcode(raw: str) -> str:
    """Return the postcode as `OX4 1AA`; raise ValueError when it is not a UK postcode."""
    compact = re.sub(r"\s+", "", raw).upper()
    if not _POSTCODE.match(compact):
        raise ValueError("is not a valid UK postcode")
    return f"{compact[:-3]} {compact[-3:]}"


def normalise_nhs_number(raw: str) -> str:
    """Return the ten digits; raise ValueError unless they pass the Modulus 11 check."""
    digits = _NHS_SEPARATORS.sub("", raw)
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise ValueError("must be 10 digits")
    total = sum(int(d) * weight for d, weight in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10 or check != int(digits[9]):
        raise ValueError("fails the NHS number Modulus 11 check")
    return digits


def date_problems(
    *,
    date_of_birth: date | None,
    expected_due_date: date | None,
    consent_recorded_on: date | None,
    as_of: date,
) -> list[FieldProblem]:
    """The date rules that depend on the evaluation date (today, or a dry run's as_of)."""
    problems: list[FieldProblem] = []
    if date_of_birth is not None and date_of_birth > as_of:
        problems.append(FieldProblem("infant.date_of_birth", "must not be in the future"))
    if expected_due_date is not None:
        earliest = as_of - timedelta(days=DUE_DATE_PAST_DAYS)
        latest = as_of + timedelta(days=DUE_DATE_FUTURE_DAYS)
        if not earliest <= expected_due_date <= latest:
            problems.append(
                FieldProblem(
                    "infant.expected_due_date",
                    f"must be from {DUE_DATE_PAST_DAYS} days ago to {DUE_DATE_FUTURE_DAYS} "
                    "days ahead",
                )
            )
    if consent_recorded_on is not None and consent_recorded_on > as_of:
        problems.append(FieldProblem("consent.recorded_on", "must not be in the future"))
    return problems
