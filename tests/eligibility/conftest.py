"""Shared fixtures for the eligibility tests: no database, no client."""

from __future__ import annotations

import pytest

from eligibility import Ruleset, default_ruleset
from tests.eligibility.factories import load_test_ruleset


@pytest.fixture(scope="session")
def default() -> Ruleset:
    """The bundled default ruleset."""
    return default_ruleset()


@pytest.fixture(scope="session")
def birth_only() -> Ruleset:
    """Test ruleset: no antenatal referrals, catchment OX / SW1A / RG4 7 / W."""
    return load_test_ruleset("birth_only_catchment")


@pytest.fixture(scope="session")
def eighteen() -> Ruleset:
    """Test ruleset: 18-month limit and non-default weights, thresholds and flags."""
    return load_test_ruleset("eighteen_months")
