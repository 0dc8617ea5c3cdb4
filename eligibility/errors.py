"""Typed errors raised by the eligibility library.

Messages never carry personal data: they name fields, keys and codes, never the values of a
referral's dates, names or postcode.
"""

from __future__ import annotations

from dataclasses import dataclass

# Codes are client-supplied strings; cap what an error echoes back so a pasted paragraph
# (which might hold personal data) is not repeated in full into logs and responses.
_MAX_CODE_ECHO = 64


class EligibilityError(Exception):
    """Base class for every error raised by the eligibility library."""


class RulesetError(EligibilityError):
    """A ruleset file could not be read or failed validation."""


class FactsError(EligibilityError, ValueError):
    """The referral facts are inconsistent (e.g. no date, or a birth date after `as_of`)."""


@dataclass(frozen=True, slots=True)
class UnknownCode:
    """One code that is not in the ruleset's lists, with the body path of the field holding it."""

    field: str
    code: str

    def describe(self) -> str:
        """Plain-English description naming the field and the code."""
        shown = self.code if len(self.code) <= _MAX_CODE_ECHO else self.code[:_MAX_CODE_ECHO] + "…"
        return f"{self.field}: unknown code {shown!r}"


class UnknownCodeError(EligibilityError, ValueError):
    """One or more concern or risk-factor codes are not in the ruleset."""

    def __init__(self, problems: list[UnknownCode]) -> None:
        self.problems: list[UnknownCode] = list(problems)
        super().__init__("; ".join(problem.describe() for problem in self.problems))
