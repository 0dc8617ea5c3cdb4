"""Possible duplicates: the keys that say two referrals are of the same infant (lifecycle.md).

Same NHS number; or, when either referral has none, the same family name, date of birth (or
due date) and postcode, normalised so that case, spaces, hyphens and apostrophes in a name do
not hide a match. The name key is stored as a hash: the match needs equality only, and the
referrals table then holds no second copy of the name.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

_IGNORED_IN_NAMES = str.maketrans("", "", " \t-\u2010\u2011\u2012\u2013\u2014'\u2019.")


@dataclass(frozen=True, slots=True)
class MatchKeys:
    nhs_number: str | None
    name_key: str | None


def normalise_name(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold().translate(_IGNORED_IN_NAMES)


def match_keys(payload: dict[str, Any]) -> MatchKeys:
    """The match keys of a stored (normalised) payload; None where the payload lacks the data."""
    infant = payload.get("infant") or {}
    family = infant.get("family_name")
    when = infant.get("date_of_birth") or (
        f"due:{infant['expected_due_date']}" if infant.get("expected_due_date") else None
    )
    postcode = payload.get("postcode")
    name_key = None
    if family and when and postcode:
        material = "\x1f".join((normalise_name(family), when, str(postcode).replace(" ", "")))
        name_key = hashlib.sha256(material.encode()).hexdigest()
    return MatchKeys(infant.get("nhs_number") or None, name_key)
