"""The plain, typed input to the rules, independent of any HTTP or FHIR schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from eligibility.errors import FactsError
from eligibility.vocabulary import Urgency

# Shape only (outward code, one space, inward code): callers normalise and validate real
# postcodes; this guards the catchment match against un-normalised input, which would
# otherwise fail to match silently.
_NORMALISED_POSTCODE = re.compile(r"[A-Z0-9]{2,4} [0-9][A-Z]{2}")


@dataclass(frozen=True, slots=True)
class SafeguardingFacts:
    """What the referrer reported about safeguarding."""

    immediate_risk: bool = False
    child_protection_plan: bool = False
    child_in_need_plan: bool = False


@dataclass(frozen=True, slots=True)
class ReferralFacts:
    """Everything the rules read about one referral (and the diagnosis, which they never read)."""

    date_of_birth: date | None
    expected_due_date: date | None
    postcode: str | None
    concern_codes: tuple[str, ...]
    risk_factors: tuple[str, ...] = ()
    concern_duration_weeks: int | None = None
    safeguarding: SafeguardingFacts = SafeguardingFacts()
    referrer_urgency: Urgency = Urgency.routine
    diagnosis: str | None = None

    def __post_init__(self) -> None:
        if (self.date_of_birth is None) == (self.expected_due_date is None):
            raise FactsError("exactly one of date_of_birth and expected_due_date must be set")
        if self.postcode is not None and not _NORMALISED_POSTCODE.fullmatch(self.postcode):
            raise FactsError("postcode must be normalised: outward code, one space, inward code")
        weeks = self.concern_duration_weeks
        if weeks is not None and (isinstance(weeks, bool) or not isinstance(weeks, int)):
            raise FactsError("concern_duration_weeks must be a whole number of weeks")
        if weeks is not None and weeks < 0:
            raise FactsError("concern_duration_weeks must not be negative")
        if self.referrer_urgency not in Urgency.__members__.values():
            raise FactsError("referrer_urgency must be 'routine' or 'urgent'")
        # A plain "urgent" from a caller becomes the member, so the facts compare and print
        # the same whichever way they were built.
        object.__setattr__(self, "referrer_urgency", Urgency(self.referrer_urgency))
        # Callers building facts from JSON naturally pass lists; store tuples so the facts
        # stay hashable and cannot be changed after evaluation.
        if not isinstance(self.concern_codes, tuple):
            object.__setattr__(self, "concern_codes", tuple(self.concern_codes))
        if not isinstance(self.risk_factors, tuple):
            object.__setattr__(self, "risk_factors", tuple(self.risk_factors))

    @property
    def antenatal(self) -> bool:
        """True when the referral is for an unborn infant (a due date instead of a birth date)."""
        return self.date_of_birth is None
