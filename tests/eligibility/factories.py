"""Builders for referral facts: a valid, eligible default with keyword overrides."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from eligibility import ReferralFacts, Ruleset, SafeguardingFacts, load_ruleset

RULESETS_DIR = Path(__file__).parent / "rulesets"
DEFAULT_TOML = Path(__file__).parents[2] / "eligibility" / "rulesets" / "default.toml"

# A date the age boundaries are easy to work out by hand against.
AS_OF = date(2026, 3, 10)


def make_facts(**overrides: Any) -> ReferralFacts:
    """Eligible by default: born 2025-09-01, one relationship concern, no postcode, nothing else."""
    fields: dict[str, Any] = {
        "date_of_birth": date(2025, 9, 1),
        "expected_due_date": None,
        "postcode": None,
        "concern_codes": ("bonding_difficulties",),
    }
    if "expected_due_date" in overrides and "date_of_birth" not in overrides:
        fields["date_of_birth"] = None
    fields.update(overrides)
    return ReferralFacts(**fields)


def safeguarding(**flags: bool) -> SafeguardingFacts:
    """SafeguardingFacts with the given flags set."""
    return SafeguardingFacts(**flags)


def load_test_ruleset(name: str) -> Ruleset:
    """One of the rulesets in tests/eligibility/rulesets/, by file stem."""
    return load_ruleset(RULESETS_DIR / f"{name}.toml")


def variant_of(source: Path, tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """Write a copy of `source` with each (old, new) edit applied exactly once."""
    text = source.read_text(encoding="utf-8")
    for old, new in edits:
        # An edit that no longer matches would make the test pass vacuously.
        assert text.count(old) == 1, f"edit target not found exactly once: {old!r}"
        text = text.replace(old, new)
    path = tmp_path / f"variant-{source.name}"
    path.write_text(text, encoding="utf-8")
    return path
