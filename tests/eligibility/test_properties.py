"""Properties that hold for every referral, checked with generated facts (hypothesis)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from eligibility import (
    ReferralFacts,
    Ruleset,
    SafeguardingFacts,
    default_ruleset,
    evaluate,
    is_under_months,
    reaches_months,
)
from tests.eligibility.factories import load_test_ruleset

# Module-level, not fixtures: hypothesis re-runs the test body and function-scoped fixtures
# would not be reset between examples.
DEFAULT = default_ruleset()
RULESETS = (
    DEFAULT,
    load_test_ruleset("birth_only_catchment"),
    load_test_ruleset("eighteen_months"),
)
POSTCODES = (None, "OX4 1AA", "OX44 9ZZ", "SW1A 1AA", "W1A 1AA", "WC1A 1AA", "RG4 7AB", "ZE1 0AA")

# These check correctness; timing is the benchmark's job, so no per-example deadline (which
# would only make the suite flaky on a loaded CI machine).
correctness = settings(deadline=None)

days = st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31))
diagnoses = st.one_of(st.none(), st.text(max_size=40))


@st.composite
def cases(draw: st.DrawFn, ruleset: Ruleset | None = None) -> tuple[ReferralFacts, Ruleset, date]:
    """A ruleset, facts using only its codes, and an evaluation date not before the birth."""
    rules = ruleset if ruleset is not None else draw(st.sampled_from(RULESETS))
    concern_pool = sorted(rules.all_concern_codes)
    risk_pool = sorted(rules.all_risk_factors)
    as_of = draw(days)
    if draw(st.booleans()):
        birth = as_of - timedelta(days=draw(st.integers(min_value=0, max_value=1600)))
        due = None
    else:
        birth = None
        due = as_of + timedelta(days=draw(st.integers(min_value=-14, max_value=294)))
    facts = ReferralFacts(
        date_of_birth=birth,
        expected_due_date=due,
        postcode=draw(st.sampled_from(POSTCODES)),
        concern_codes=tuple(draw(st.lists(st.sampled_from(concern_pool), max_size=5))),
        risk_factors=tuple(draw(st.lists(st.sampled_from(risk_pool), max_size=5))),
        concern_duration_weeks=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=80))),
        safeguarding=SafeguardingFacts(
            draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
        ),
        referrer_urgency=draw(st.sampled_from(("routine", "urgent"))),
        diagnosis=draw(diagnoses),
    )
    return facts, rules, as_of


@correctness
@given(cases(), diagnoses)
def test_a_diagnosis_never_changes_any_part_of_a_decision(
    case: tuple[ReferralFacts, Ruleset, date], other_diagnosis: str | None
) -> None:
    facts, rules, as_of = case
    before = evaluate(facts, rules, as_of)
    after = evaluate(replace(facts, diagnosis=other_diagnosis), rules, as_of)
    assert after.to_dict() == before.to_dict()


@correctness
@given(cases())
def test_evaluation_is_deterministic(case: tuple[ReferralFacts, Ruleset, date]) -> None:
    facts, rules, as_of = case
    first = evaluate(facts, rules, as_of)
    copy = ReferralFacts(
        date_of_birth=facts.date_of_birth,
        expected_due_date=facts.expected_due_date,
        postcode=facts.postcode,
        concern_codes=tuple(facts.concern_codes),
        risk_factors=tuple(facts.risk_factors),
        concern_duration_weeks=facts.concern_duration_weeks,
        safeguarding=replace(facts.safeguarding),
        referrer_urgency=facts.referrer_urgency,
        diagnosis=facts.diagnosis,
    )
    assert evaluate(copy, rules, as_of) == first
    assert evaluate(facts, rules, as_of).to_dict() == first.to_dict()


@correctness
@given(cases(), st.randoms(use_true_random=False))
def test_the_order_codes_are_given_in_never_matters(
    case: tuple[ReferralFacts, Ruleset, date], rng: random.Random
) -> None:
    facts, rules, as_of = case
    shuffled = replace(
        facts,
        concern_codes=tuple(rng.sample(facts.concern_codes, len(facts.concern_codes))),
        risk_factors=tuple(rng.sample(facts.risk_factors, len(facts.risk_factors))),
    )
    assert evaluate(shuffled, rules, as_of) == evaluate(facts, rules, as_of)


@correctness
@given(cases(), st.data())
def test_adding_a_risk_factor_never_lowers_the_score(
    case: tuple[ReferralFacts, Ruleset, date], data: st.DataObject
) -> None:
    facts, rules, as_of = case
    extra = data.draw(st.sampled_from(sorted(rules.all_risk_factors)))
    before = evaluate(facts, rules, as_of)
    after = evaluate(replace(facts, risk_factors=(*facts.risk_factors, extra)), rules, as_of)
    # Risk factors are not criteria: eligibility cannot change, only the score.
    assert after.eligible is before.eligible
    if before.score is not None:
        assert after.score is not None
        assert after.score >= before.score


@correctness
@given(
    cases(DEFAULT).filter(lambda c: c[0].date_of_birth is not None),
    st.integers(min_value=0, max_value=3000),
)
def test_over_the_age_limit_stays_over(
    case: tuple[ReferralFacts, Ruleset, date], later_by: int
) -> None:
    facts, rules, as_of = case
    later = as_of + timedelta(days=later_by)
    if evaluate(facts, rules, as_of).criteria.age == "not_met":
        assert evaluate(facts, rules, later).criteria.age == "not_met"


@correctness
@given(days, st.integers(min_value=1, max_value=48), st.integers(min_value=0, max_value=6000))
def test_under_the_limit_is_monotonic_for_every_limit(birth: date, months: int, after: int) -> None:
    as_of = birth + timedelta(days=after)
    if not is_under_months(birth, months, as_of):
        assert not is_under_months(birth, months, as_of + timedelta(days=1))


@correctness
@given(days, st.integers(min_value=1, max_value=48))
def test_reaching_n_months_lands_on_the_same_day_or_the_first(birth: date, months: int) -> None:
    reached = reaches_months(birth, months)
    assert reached > birth
    expected_month = (birth.month - 1 + months) % 12 + 1
    if reached.day == birth.day:
        assert reached.month == expected_month
    else:
        # The day did not exist that month, so it rolled to the 1st of the next one.
        assert reached.day == 1
        assert reached.month == expected_month % 12 + 1
        assert birth.day > 28
    # The day before is still under the limit; the day itself is not.
    assert is_under_months(birth, months, reached - timedelta(days=1))
    assert not is_under_months(birth, months, reached)
