"""Checks across a ruleset file's sections that field-by-field validation cannot make."""

from __future__ import annotations

import difflib
import zoneinfo
from collections.abc import Iterable, Mapping
from string import Formatter

from eligibility.schema import RulesetFile

# Placeholders a ruleset's texts may use; everything else is a typo that would otherwise
# surface as a KeyError on the first referral instead of at start-up.
TEXT_PLACEHOLDERS: frozenset[str] = frozenset(
    {"age_limit_months", "step_up_threshold", "catchment"}
)
SCORE_PLACEHOLDERS: frozenset[str] = TEXT_PLACEHOLDERS | {"score"}
SCORE_REASONS: frozenset[str] = frozenset({"STEP_UP_SCORE", "STEP_DOWN_SCORE"})


def cross_check(model: RulesetFile) -> list[str]:
    """Every problem found, each as "key.path: message"."""
    problems: list[str] = []
    codes = model.codes
    _duplicates(
        problems,
        ("codes.relationship_concerns", codes.relationship_concerns),
        ("codes.other_concerns", codes.other_concerns),
    )
    _duplicates(
        problems,
        ("codes.severe_risk_factors", codes.severe_risk_factors),
        ("codes.other_risk_factors", codes.other_risk_factors),
    )
    # Risk-factor codes name contributions alongside the fixed indicators, so they must differ.
    reserved = set(type(model.weights).model_fields) - {"risk_factors"}
    for path, codes_list in (
        ("codes.severe_risk_factors", codes.severe_risk_factors),
        ("codes.other_risk_factors", codes.other_risk_factors),
    ):
        problems += [
            f"{path}[{i}]: {code!r} is reserved for an indicator"
            for i, code in enumerate(codes_list)
            if code in reserved
        ]
    all_lists = (
        ("codes.relationship_concerns", codes.relationship_concerns),
        ("codes.other_concerns", codes.other_concerns),
        ("codes.severe_risk_factors", codes.severe_risk_factors),
        ("codes.other_risk_factors", codes.other_risk_factors),
    )
    problems += _unknown_keys("labels", model.labels, all_lists)
    problems += _unknown_keys("weights.risk_factors", model.weights.risk_factors, all_lists[2:])

    thresholds = model.thresholds
    if thresholds.moderate_concern_weeks >= thresholds.enduring_concern_weeks:
        problems.append(
            "thresholds.moderate_concern_weeks: must be less than thresholds.enduring_concern_weeks"
        )
    try:
        zoneinfo.ZoneInfo(model.ruleset.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"ruleset.timezone: unknown time zone {model.ruleset.timezone!r}")

    service_ids: set[str] = set()
    for index, service in enumerate(model.services):
        if service.id in service_ids:
            problems.append(f"services[{index}].id: duplicate service id {service.id!r}")
        service_ids.add(service.id)
        if service.url is None and service.email is None:
            problems.append(f"services[{index}]: needs a url or an email")

    for name, text in model.criteria:
        problems += _template_problems(f"criteria.{name}", text, TEXT_PLACEHOLDERS)
    for code, reason in model.reasons:
        allowed = SCORE_PLACEHOLDERS if code in SCORE_REASONS else TEXT_PLACEHOLDERS
        problems += _template_problems(f"reasons.{code}.message", reason.message, allowed)
        for index, service_id in enumerate(reason.signposts):
            if service_id not in service_ids:
                problems.append(
                    f"reasons.{code}.signposts[{index}]: unknown service {service_id!r}"
                )
    return problems


def _duplicates(problems: list[str], *lists: tuple[str, Iterable[str]]) -> None:
    seen: set[str] = set()
    for path, codes in lists:
        for index, code in enumerate(codes):
            if code in seen:
                problems.append(f"{path}[{index}]: duplicate code {code!r}")
            seen.add(code)


def _unknown_keys(
    path: str, mapping: Mapping[str, object], lists: Iterable[tuple[str, list[str]]]
) -> list[str]:
    """Keys of `mapping` that are not codes of `lists`. A key that is one letter or two away
    from a code the mapping lacks is most likely right and the code misspelt where it is
    listed (`domestic_abuze`), so that is reported at the list, where the fix is."""
    where = {code: f"{at}[{i}]" for at, codes in lists for i, code in enumerate(codes)}
    missing = [code for code in where if code not in mapping]
    problems = []
    for key in mapping:
        if key in where:
            continue
        near = difflib.get_close_matches(key, missing, n=1, cutoff=0.85)
        if near:
            missing.remove(near[0])
            problems.append(
                f"{where[near[0]]}: {near[0]!r} is probably misspelt: {path} has {key!r}"
            )
        else:
            problems.append(f"{path}.{key}: unknown code")
    return problems


def _template_problems(path: str, text: str, allowed: frozenset[str]) -> list[str]:
    try:
        fields = [field for _, field, _, _ in Formatter().parse(text) if field is not None]
    except ValueError as exc:
        return [f"{path}: malformed placeholder ({exc})"]
    return [
        f"{path}: unknown placeholder {{{field}}}; allowed: {', '.join(sorted(allowed))}"
        for field in fields
        if field not in allowed
    ]
