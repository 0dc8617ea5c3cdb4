"""Eligibility and routing rules for parent-infant relationship teams: pure and versioned.

No web framework, database, network or clock: plain facts and an `as_of` date in, a decision
out. See `evaluate()` and the bundled `rulesets/default.toml`.
"""

from eligibility.catchment import Catchment
from eligibility.dates import is_under_months, reaches_months
from eligibility.decision import (
    Contribution,
    Criteria,
    Decision,
    Reason,
    RulesetIdentity,
    Signpost,
)
from eligibility.engine import evaluate
from eligibility.errors import (
    EligibilityError,
    FactsError,
    RulesetError,
    UnknownCode,
    UnknownCodeError,
)
from eligibility.facts import ReferralFacts, SafeguardingFacts
from eligibility.glossary import CRITERIA, FLAGS, GLOSSARY
from eligibility.ruleset import (
    Ruleset,
    Thresholds,
    Weights,
    default_ruleset,
    load_ruleset,
    parse_ruleset,
)
from eligibility.vocabulary import CriterionResult, Outcome, Priority, Urgency

__all__ = [
    "CRITERIA",
    "FLAGS",
    "GLOSSARY",
    "Catchment",
    "Contribution",
    "Criteria",
    "CriterionResult",
    "Decision",
    "EligibilityError",
    "FactsError",
    "Outcome",
    "Priority",
    "Reason",
    "ReferralFacts",
    "Ruleset",
    "RulesetError",
    "RulesetIdentity",
    "SafeguardingFacts",
    "Signpost",
    "Thresholds",
    "UnknownCode",
    "UnknownCodeError",
    "Urgency",
    "Weights",
    "default_ruleset",
    "evaluate",
    "is_under_months",
    "load_ruleset",
    "parse_ruleset",
    "reaches_months",
]
