"""Loading a ruleset file into an immutable `Ruleset` with everything precomputed for speed."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from eligibility.catchment import Catchment
from eligibility.checks import cross_check
from eligibility.decision import Contribution, Reason, RulesetIdentity, Signpost
from eligibility.describe import describe_ruleset
from eligibility.errors import RulesetError, UnknownCode
from eligibility.facts import ReferralFacts
from eligibility.glossary import FLAGS, Flag
from eligibility.schema import RulesetFile

DEFAULT_RULESET_RESOURCE = "rulesets/default.toml"


@dataclass(frozen=True, slots=True)
class Weights:
    """What each indicator adds to the need score (risk factors: see `risk_factor_weights`)."""

    safeguarding_immediate_risk: int
    safeguarding_child_protection_plan: int
    safeguarding_child_in_need_plan: int
    severe_risk_factor: int
    other_risk_factor: int
    concern_duration_enduring: int
    concern_duration_4_to_11_weeks: int
    complex_relationship_concerns: int
    referrer_marked_urgent: int


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The step-up score and the concern duration and complexity cut-offs."""

    step_up_score: int
    enduring_concern_weeks: int
    moderate_concern_weeks: int
    complex_concern_count: int


class Ruleset:
    """A validated, immutable ruleset; build one with `load_ruleset()` or `default_ruleset()`."""

    id: str
    version: str
    sha256: str
    source: str
    description: str
    timezone: str
    age_limit_months: int
    accepts_antenatal: bool
    catchment: tuple[str, ...]
    catchment_matcher: Catchment
    relationship_concern_codes: tuple[str, ...]
    other_concern_codes: tuple[str, ...]
    severe_risk_factors: tuple[str, ...]
    other_risk_factors: tuple[str, ...]
    all_concern_codes: frozenset[str]
    all_risk_factors: frozenset[str]
    relationship_concern_set: frozenset[str]
    labels: Mapping[str, str]
    weights: Weights
    risk_factor_weights: Mapping[str, int]
    risk_factor_rank: Mapping[str, int]
    contribution_table: Mapping[str, Contribution]
    thresholds: Thresholds
    step_up_threshold: int
    urgent_when: tuple[Flag, ...]
    alert_when: tuple[Flag, ...]
    urgent_flag_indexes: tuple[int, ...]
    alert_flag_indexes: tuple[int, ...]
    criteria_descriptions: Mapping[str, str]
    reasons: Mapping[str, Reason]
    reason_signposts: Mapping[str, tuple[Signpost, ...]]
    score_reasons: Mapping[str, tuple[Reason, ...]]
    next_steps: Mapping[str, tuple[str, ...]]
    services: tuple[Signpost, ...]
    services_by_id: Mapping[str, Signpost]
    # Reason codes per move: "triage" (an override), "withdraw", "close".
    lifecycle_reasons: Mapping[str, tuple[str, ...]]
    identity: RulesetIdentity

    def __init__(self, model: RulesetFile, *, sha256: str, source: str) -> None:
        set_ = self._set
        info, elig, codes = model.ruleset, model.eligibility, model.codes
        set_("id", info.id)
        set_("version", info.version)
        set_("sha256", sha256)
        set_("source", source)
        set_("description", info.description)
        set_("timezone", info.timezone)
        set_("identity", RulesetIdentity(id=info.id, version=info.version, sha256=sha256))
        set_("age_limit_months", elig.age_limit_months)
        set_("accepts_antenatal", elig.accepts_antenatal)
        set_("catchment", tuple(elig.catchment))
        set_("catchment_matcher", Catchment.from_entries(self.catchment))

        set_("relationship_concern_codes", tuple(codes.relationship_concerns))
        set_("other_concern_codes", tuple(codes.other_concerns))
        set_("severe_risk_factors", tuple(codes.severe_risk_factors))
        set_("other_risk_factors", tuple(codes.other_risk_factors))
        set_("relationship_concern_set", frozenset(codes.relationship_concerns))
        set_("all_concern_codes", frozenset(codes.relationship_concerns + codes.other_concerns))
        risk_order = codes.severe_risk_factors + codes.other_risk_factors
        set_("all_risk_factors", frozenset(risk_order))
        set_(
            "labels",
            MappingProxyType(
                {
                    code: model.labels.get(code, code.replace("_", " ").capitalize())
                    for code in (*codes.relationship_concerns, *codes.other_concerns, *risk_order)
                }
            ),
        )

        weights = model.weights
        set_("weights", Weights(**weights.model_dump(exclude={"risk_factors"})))
        risk_weights = dict.fromkeys(codes.severe_risk_factors, weights.severe_risk_factor)
        risk_weights |= dict.fromkeys(codes.other_risk_factors, weights.other_risk_factor)
        risk_weights |= weights.risk_factors
        set_("risk_factor_weights", MappingProxyType(risk_weights))
        # Contributions are listed in file order, whatever order the referrer gave them in.
        set_("risk_factor_rank", MappingProxyType({c: i for i, c in enumerate(risk_order)}))
        # Contributions are immutable, so each is built once here and shared by every decision.
        indicator_weights = weights.model_dump(exclude={"risk_factors"}) | risk_weights
        del indicator_weights["severe_risk_factor"], indicator_weights["other_risk_factor"]
        set_(
            "contribution_table",
            MappingProxyType(
                {name: Contribution(name, w) for name, w in indicator_weights.items() if w}
            ),
        )
        set_("thresholds", Thresholds(**model.thresholds.model_dump()))
        set_("step_up_threshold", model.thresholds.step_up_score)
        set_("urgent_when", tuple(model.priority.urgent_when))
        set_("alert_when", tuple(model.safeguarding_alert.raised_when))
        set_("urgent_flag_indexes", tuple(sorted({FLAGS.index(f) for f in self.urgent_when})))
        set_("alert_flag_indexes", tuple(sorted({FLAGS.index(f) for f in self.alert_when})))

        values: dict[str, object] = {
            "age_limit_months": self.age_limit_months,
            "step_up_threshold": self.step_up_threshold,
            "catchment": ", ".join(self.catchment) or "anywhere",
        }
        set_(
            "criteria_descriptions",
            MappingProxyType({name: text.format(**values) for name, text in model.criteria}),
        )
        services = tuple(
            Signpost(id=s.id, name=s.name, description=s.description, url=s.url, email=s.email)
            for s in model.services
        )
        set_("services", services)
        by_id = {service.id: service for service in services}
        set_("services_by_id", MappingProxyType(by_id))
        set_(
            "lifecycle_reasons",
            MappingProxyType(
                {
                    "triage": tuple(model.lifecycle.triage_override),
                    "withdraw": tuple(model.lifecycle.withdraw),
                    "close": tuple(model.lifecycle.close),
                }
            ),
        )
        reasons: dict[str, Reason] = {}
        reason_signposts: dict[str, tuple[Signpost, ...]] = {}
        score_reasons: dict[str, tuple[Reason, ...]] = {}
        max_score = _max_score(self.weights, risk_weights)
        for code, text in model.reasons:
            reason_signposts[code] = tuple(by_id[service_id] for service_id in text.signposts)
            if code.endswith("_SCORE"):
                # Scores are bounded by the weights, so every message is rendered here once.
                score_reasons[code] = tuple(
                    Reason(code, text.message.format(score=score, **values))
                    for score in range(max_score + 1)
                )
            else:
                reasons[code] = Reason(code, text.message.format(**values))
        set_("reasons", MappingProxyType(reasons))
        set_("reason_signposts", MappingProxyType(reason_signposts))
        set_("score_reasons", MappingProxyType(score_reasons))
        set_("next_steps", MappingProxyType({k: tuple(v) for k, v in model.next_steps}))

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Ruleset is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"Ruleset(id={self.id!r}, version={self.version!r}, sha256={self.sha256[:12]!r}…)"

    def unknown_codes(self, facts: ReferralFacts) -> list[UnknownCode]:
        """Every concern or risk-factor code not in this ruleset, named by its body path."""
        concerns, risks = self.all_concern_codes, self.all_risk_factors
        return [
            UnknownCode(f"concerns.codes[{i}]", code)
            for i, code in enumerate(facts.concern_codes)
            if code not in concerns
        ] + [
            UnknownCode(f"risk_factors[{i}]", code)
            for i, code in enumerate(facts.risk_factors)
            if code not in risks
        ]

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the pathway, for `GET /v1/pathway`."""
        return describe_ruleset(self)


def _max_score(weights: Weights, risk_weights: Mapping[str, int]) -> int:
    return (
        weights.safeguarding_immediate_risk
        + weights.safeguarding_child_protection_plan
        + weights.safeguarding_child_in_need_plan
        + sum(risk_weights.values())
        + max(weights.concern_duration_enduring, weights.concern_duration_4_to_11_weeks)
        + weights.complex_relationship_concerns
        + weights.referrer_marked_urgent
    )


def load_ruleset(path: Path) -> Ruleset:
    """Load and validate a ruleset file; RulesetError names the file and the bad key."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RulesetError(f"{path}: cannot read ruleset file ({exc.strerror})") from exc
    return parse_ruleset(raw, source=str(path))


@cache
def default_ruleset() -> Ruleset:
    """The bundled default ruleset (loaded once)."""
    resource = resources.files("eligibility").joinpath(DEFAULT_RULESET_RESOURCE)
    return parse_ruleset(resource.read_bytes(), source=f"eligibility/{DEFAULT_RULESET_RESOURCE}")


def parse_ruleset(raw: bytes, *, source: str) -> Ruleset:
    """Validate a ruleset from the file's bytes; `source` names it in errors."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RulesetError(f"{source}: not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError(f"{source}: not valid TOML: {exc}") from exc
    try:
        model = RulesetFile.model_validate(data)
    except ValidationError as exc:
        raise _ruleset_error(source, [_format_error(e) for e in exc.errors()]) from None
    problems = cross_check(model)
    if problems:
        raise _ruleset_error(source, problems)
    return Ruleset(model, sha256=hashlib.sha256(raw).hexdigest(), source=source)


def _ruleset_error(source: str, problems: list[str]) -> RulesetError:
    # One line, so that `referral-service` can print it as it prints a bad setting.
    return RulesetError(f"{source}: invalid ruleset: {'; '.join(problems)}")


def _format_error(error: Any) -> str:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"{path or '(top level)'}: {error['msg']}"
