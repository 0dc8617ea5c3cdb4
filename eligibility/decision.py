"""The decision returned by `evaluate()`, and its stable JSON shape."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from eligibility.vocabulary import CriterionResult, Outcome, Priority

_T = TypeVar("_T")
_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class RulesetIdentity:
    """Which ruleset made a decision: enough to find the exact file again."""

    id: str
    version: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Reason:
    """A reason code and its plain-English message (built from ruleset text only)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Contribution:
    """One indicator that added to the need score, and by how much."""

    indicator: str
    weight: int


@dataclass(frozen=True, slots=True)
class Signpost:
    """A service the referrer is pointed to (after Open Referral UK's service record)."""

    id: str
    name: str
    description: str
    url: str | None = None
    email: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "url": self.url,
            "email": self.email,
        }


@dataclass(frozen=True, slots=True)
class Criteria:
    """The status of every criterion, in the order the pathway evaluates them."""

    age: CriterionResult
    relationship_concern: CriterionResult
    catchment: CriterionResult
    diagnosis: CriterionResult = CriterionResult.not_required

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (plain strings: the values the decision was always stored with)."""
        return {
            "age": str(self.age),
            "relationship_concern": str(self.relationship_concern),
            "catchment": str(self.catchment),
            "diagnosis": str(self.diagnosis),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of the rules for one referral on one date."""

    eligible: bool
    outcome: Outcome
    priority: Priority
    safeguarding_alert: bool
    criteria: Criteria
    reasons: tuple[Reason, ...]
    score: int | None
    contributions: tuple[Contribution, ...] | None
    next_steps: tuple[str, ...]
    signposts: tuple[Signpost, ...]
    ruleset: RulesetIdentity
    provisional: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The decision JSON of the API contract; every key is always present."""
        contributions = self.contributions
        return {
            "eligible": self.eligible,
            "outcome": str(self.outcome),
            "priority": str(self.priority),
            "provisional": self.provisional,
            "safeguarding_alert": self.safeguarding_alert,
            "criteria": self.criteria.to_dict(),
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "score": self.score,
            "contributions": (
                None
                if contributions is None
                else [{"indicator": c.indicator, "weight": c.weight} for c in contributions]
            ),
            "next_steps": list(self.next_steps),
            "signposts": [s.to_dict() for s in self.signposts],
            "ruleset": self.ruleset.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Rebuild a decision from `to_dict()` output (e.g. read back from storage)."""
        try:
            criteria = data["criteria"]
            contributions = data["contributions"]
            ruleset = data["ruleset"]
            return cls(
                eligible=_typed(data["eligible"], bool, "eligible"),
                outcome=_choice(data["outcome"], Outcome, "outcome"),
                priority=_choice(data["priority"], Priority, "priority"),
                provisional=_typed(data["provisional"], bool, "provisional"),
                safeguarding_alert=_typed(data["safeguarding_alert"], bool, "safeguarding_alert"),
                criteria=Criteria(
                    **{
                        name: _choice(criteria[name], CriterionResult, f"criteria.{name}")
                        for name in ("age", "relationship_concern", "catchment", "diagnosis")
                    }
                ),
                reasons=tuple(
                    Reason(code=_str(r["code"]), message=_str(r["message"]))
                    for r in data["reasons"]
                ),
                score=None if data["score"] is None else _typed(data["score"], int, "score"),
                contributions=(
                    None
                    if contributions is None
                    else tuple(
                        Contribution(
                            indicator=_str(c["indicator"]),
                            weight=_typed(c["weight"], int, "contributions.weight"),
                        )
                        for c in contributions
                    )
                ),
                next_steps=tuple(_str(step) for step in data["next_steps"]),
                signposts=tuple(
                    Signpost(
                        id=_str(s["id"]),
                        name=_str(s["name"]),
                        description=_str(s["description"]),
                        url=_optional_str(s.get("url")),
                        email=_optional_str(s.get("email")),
                    )
                    for s in data["signposts"]
                ),
                ruleset=RulesetIdentity(
                    id=_str(ruleset["id"]),
                    version=_str(ruleset["version"]),
                    sha256=_str(ruleset["sha256"]),
                ),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a decision: missing or malformed {exc}") from exc


def _typed(value: object, kind: type[_T], name: str) -> _T:
    # bool is a subclass of int: a stored `true` must not read back as a score of 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"not a decision: {name} should be {kind.__name__}")
    return value


def _choice(value: object, allowed: type[_E], name: str) -> _E:
    if not isinstance(value, str) or value not in allowed.__members__.values():
        raise ValueError(f"not a decision: {name} should be one of {', '.join(allowed)}")
    return allowed(value)


def _str(value: object) -> str:
    return _typed(value, str, "text field")


def _optional_str(value: object) -> str | None:
    return None if value is None else _str(value)
