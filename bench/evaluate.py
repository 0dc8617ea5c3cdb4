"""Time `eligibility.evaluate()`: `python -m bench.evaluate` prints µs per decision."""

from __future__ import annotations

import argparse
import timeit
from datetime import date
from functools import partial

from eligibility import ReferralFacts, SafeguardingFacts, default_ruleset, evaluate

AS_OF = date(2026, 3, 10)

# One of each outcome, from the plainest referral to one with every indicator.
CASES: dict[str, ReferralFacts] = {
    "step_down (plain)": ReferralFacts(
        date_of_birth=date(2025, 9, 1),
        expected_due_date=None,
        postcode="OX4 1AA",
        concern_codes=("bonding_difficulties",),
    ),
    "step_up (every indicator, alert)": ReferralFacts(
        date_of_birth=date(2025, 9, 1),
        expected_due_date=None,
        postcode="OX4 1AA",
        concern_codes=(
            "bonding_difficulties",
            "negative_feelings_towards_infant",
            "infant_withdrawn_or_avoidant",
        ),
        risk_factors=("social_isolation", "domestic_abuse", "substance_misuse"),
        concern_duration_weeks=14,
        safeguarding=SafeguardingFacts(True, True, True),
        referrer_urgency="urgent",
    ),
    "step_up (antenatal)": ReferralFacts(
        date_of_birth=None,
        expected_due_date=date(2026, 6, 1),
        postcode=None,
        concern_codes=("caregiver_mental_health_affecting_relationship",),
        risk_factors=("caregiver_severe_mental_illness",),
        concern_duration_weeks=6,
    ),
    "signpost (two reasons)": ReferralFacts(
        date_of_birth=date(2023, 1, 1),
        expected_due_date=None,
        postcode="OX4 1AA",
        concern_codes=("feeding_only", "sleep_only"),
    ),
}


def main() -> None:
    """Print the best-of-N time per decision for each case and their mean."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs (best is reported)")
    args = parser.parse_args()

    ruleset = default_ruleset()
    results: list[float] = []
    for name, facts in CASES.items():
        outcome = evaluate(facts, ruleset, AS_OF).outcome
        timer = timeit.Timer(partial(evaluate, facts, ruleset, AS_OF))
        best = min(timer.repeat(repeat=args.repeat, number=args.number)) / args.number * 1e6
        results.append(best)
        print(f"{name:<36} {outcome:<10} {best:6.2f} µs/decision")
    print(f"{'mean':<47} {sum(results) / len(results):6.2f} µs/decision")


if __name__ == "__main__":
    main()
