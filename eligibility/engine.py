"""`evaluate()`: the pathway's rules applied to one referral on one date."""

from __future__ import annotations

from datetime import date

from eligibility.dates import reaches_months
from eligibility.decision import (
    Contribution,
    Criteria,
    Decision,
    Reason,
    Signpost,
)
from eligibility.errors import FactsError, UnknownCodeError
from eligibility.facts import ReferralFacts
from eligibility.ruleset import Ruleset
from eligibility.vocabulary import CriterionResult, Outcome, Priority, Urgency

_MET = CriterionResult.met
_NOT_MET = CriterionResult.not_met


def evaluate(facts: ReferralFacts, ruleset: Ruleset, as_of: date) -> Decision:
    """Apply `ruleset` to `facts` on `as_of`; the same input always gives the same decision."""
    if not (
        ruleset.all_concern_codes.issuperset(facts.concern_codes)
        and ruleset.all_risk_factors.issuperset(facts.risk_factors)
    ):
        raise UnknownCodeError(ruleset.unknown_codes(facts))

    reasons = ruleset.reasons
    unmet: list[Reason] = []
    birth = facts.date_of_birth
    if birth is None:
        age_met = ruleset.accepts_antenatal
        if not age_met:
            unmet.append(reasons["ANTENATAL_NOT_ACCEPTED"])
    else:
        if birth > as_of:
            raise FactsError("date_of_birth is after the evaluation date")
        age_met = as_of < reaches_months(birth, ruleset.age_limit_months)
        if not age_met:
            unmet.append(reasons["AGE_OVER_LIMIT"])

    relationship = ruleset.relationship_concern_set
    concern_met = not relationship.isdisjoint(facts.concern_codes)
    if not concern_met:
        unmet.append(reasons["NO_RELATIONSHIP_CONCERN"])

    catchment_met = ruleset.catchment_matcher.contains(facts.postcode)
    if not catchment_met:
        unmet.append(reasons["OUT_OF_CATCHMENT"])

    safeguarding = facts.safeguarding
    # Same order as glossary.FLAGS, which the ruleset's flag indexes refer to.
    flags = (
        safeguarding.immediate_risk,
        safeguarding.child_protection_plan,
        safeguarding.child_in_need_plan,
        facts.referrer_urgency == Urgency.urgent,
    )
    alert = any(flags[i] for i in ruleset.alert_flag_indexes)
    urgent = any(flags[i] for i in ruleset.urgent_flag_indexes)
    # The alert leads the reasons and next steps, so a reader who sees only the first line
    # (or only the status endpoint's next steps) still sees it, whatever the outcome.
    leading: list[Reason] = [reasons["SAFEGUARDING_ALERT"]] if alert else []
    alert_steps = ruleset.next_steps["safeguarding_alert"] if alert else ()

    criteria = Criteria(
        age=_MET if age_met else _NOT_MET,
        relationship_concern=_MET if concern_met else _NOT_MET,
        catchment=_MET if catchment_met else _NOT_MET,
    )

    if unmet:
        signposts: dict[str, Signpost] = {}
        for reason in unmet:
            for service in ruleset.reason_signposts[reason.code]:
                signposts.setdefault(service.id, service)
        return Decision(
            eligible=False,
            outcome=Outcome.signpost,
            priority=Priority.urgent if urgent else Priority.routine,
            safeguarding_alert=alert,
            criteria=criteria,
            reasons=(*leading, *unmet),
            score=None,
            contributions=None,
            next_steps=(*alert_steps, *ruleset.next_steps["signpost"]),
            signposts=tuple(signposts.values()),
            ruleset=ruleset.identity,
        )

    contributions = _contributions(facts, ruleset, flags)
    score = sum(c.weight for c in contributions)
    outcome = Outcome.step_up if score >= ruleset.step_up_threshold else Outcome.step_down
    score_reasons = ruleset.score_reasons[
        "STEP_UP_SCORE" if outcome is Outcome.step_up else "STEP_DOWN_SCORE"
    ]
    return Decision(
        eligible=True,
        outcome=outcome,
        priority=Priority.urgent if urgent else Priority.routine,
        safeguarding_alert=alert,
        criteria=criteria,
        reasons=(*leading, score_reasons[score]),
        score=score,
        contributions=contributions,
        next_steps=(*alert_steps, *ruleset.next_steps[outcome.value]),
        signposts=(),
        ruleset=ruleset.identity,
    )


def _contributions(
    facts: ReferralFacts, ruleset: Ruleset, flags: tuple[bool, bool, bool, bool]
) -> tuple[Contribution, ...]:
    """Every indicator that applies, in the order of the weights table, with its weight."""
    thresholds = ruleset.thresholds
    applies: list[str] = []
    if flags[0]:
        applies.append("safeguarding_immediate_risk")
    if flags[1]:
        applies.append("safeguarding_child_protection_plan")
    if flags[2]:
        applies.append("safeguarding_child_in_need_plan")
    if facts.risk_factors:
        # A repeated code is one risk factor, counted once.
        applies += sorted(set(facts.risk_factors), key=ruleset.risk_factor_rank.__getitem__)
    weeks = facts.concern_duration_weeks
    if weeks is not None:
        if weeks >= thresholds.enduring_concern_weeks:
            applies.append("concern_duration_enduring")
        elif weeks >= thresholds.moderate_concern_weeks:
            applies.append("concern_duration_4_to_11_weeks")
    relationship = ruleset.relationship_concern_set
    if len(relationship.intersection(facts.concern_codes)) >= thresholds.complex_concern_count:
        applies.append("complex_relationship_concerns")
    if flags[3]:
        applies.append("referrer_marked_urgent")
    # Zero-weight indicators are absent from the table: they did not contribute.
    table = ruleset.contribution_table
    return tuple(table[name] for name in applies if name in table)
