"""A validated referral body, and the checks that need the ruleset or today's date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from eligibility import ReferralFacts, Ruleset
from service.core.errors import FieldProblem, InvalidContent
from service.referrals.validation import date_problems


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated referral body: normalised JSON (personal data) and the facts for the rules."""

    payload: dict[str, Any]
    facts: ReferralFacts
    consent_recorded_on: date | None


def check_submission(submission: Submission, ruleset: Ruleset, as_of: date) -> None:
    """Raise InvalidContent naming every field that the rules or the dates refuse."""
    facts = submission.facts
    problems = date_problems(
        date_of_birth=facts.date_of_birth,
        expected_due_date=facts.expected_due_date,
        consent_recorded_on=submission.consent_recorded_on,
        as_of=as_of,
    )
    problems += [
        FieldProblem(u.field, f"unknown code '{u.code}' for ruleset {ruleset.id}")
        for u in ruleset.unknown_codes(facts)
    ]
    if problems:
        raise InvalidContent(problems)
