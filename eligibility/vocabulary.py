"""The pathway's closed vocabularies, named once: the API's schemas and the rules share them.

StrEnum members are their values (`Outcome.step_up == "step_up"`, and `json.dumps` writes
`"step_up"`), so decisions stored or hashed before these were enums read and hash the same.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """Where the rules route a referral (see the glossary: step up, step down, signpost)."""

    step_up = "step_up"
    step_down = "step_down"
    signpost = "signpost"


class Priority(StrEnum):
    """How soon the team should look at a referral."""

    urgent = "urgent"
    routine = "routine"


class Urgency(StrEnum):
    """How urgent the referrer says the referral is."""

    routine = "routine"
    urgent = "urgent"


class CriterionResult(StrEnum):
    """Whether one eligibility criterion was met (the diagnosis is never required)."""

    met = "met"
    not_met = "not_met"
    not_required = "not_required"
