"""Micro-benchmark of evaluate(): reports time per decision (no timed assertion).

Run with `pytest tests/eligibility/test_evaluate_benchmark.py --benchmark-enable`; in the normal
suite benchmarks are disabled and this runs once as a plain test. Target: under 20 µs.
"""

from __future__ import annotations

from datetime import date

from pytest_benchmark.fixture import BenchmarkFixture

from eligibility import Decision, Ruleset, SafeguardingFacts, evaluate
from tests.eligibility.factories import AS_OF, make_facts


def test_evaluate_step_up_with_every_indicator(
    benchmark: BenchmarkFixture, default: Ruleset
) -> None:
    facts = make_facts(
        concern_codes=(
            "bonding_difficulties",
            "negative_feelings_towards_infant",
            "infant_withdrawn_or_avoidant",
        ),
        risk_factors=("domestic_abuse", "social_isolation"),
        concern_duration_weeks=14,
        safeguarding=SafeguardingFacts(immediate_risk=True),
        referrer_urgency="urgent",
    )
    decision: Decision = benchmark(evaluate, facts, default, AS_OF)
    assert (decision.outcome, decision.priority, decision.safeguarding_alert) == (
        "step_up",
        "urgent",
        True,
    )
    # 3 + 2 + 1 + 2 (enduring) + 1 (complex) + 1 (urgent)
    assert decision.score == 10


def test_evaluate_signpost(benchmark: BenchmarkFixture, default: Ruleset) -> None:
    facts = make_facts(date_of_birth=date(2023, 1, 1), concern_codes=("feeding_only",))
    decision: Decision = benchmark(evaluate, facts, default, AS_OF)
    assert decision.outcome == "signpost"
    assert [r.code for r in decision.reasons] == ["AGE_OVER_LIMIT", "NO_RELATIONSHIP_CONCERN"]
