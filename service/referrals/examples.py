"""One valid example referral, the single source for the CLI, the tests and the benchmark."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any


def example_referral(today: date) -> dict[str, Any]:
    """A referral the default rules step up (score 3), dated relative to `today` so it stays
    valid: `referral-service example-referral`, the test factory and the benchmark start here."""
    return {
        "referrer": {
            "name": "Sam Carter",
            "role": "health_visitor",
            "email": "sam.carter@nhs.example",
            "phone": "01865 000000",
        },
        "infant": {
            "given_name": "Alex",
            "family_name": "Example",
            "nhs_number": "9434765919",
            "date_of_birth": (today - timedelta(days=120)).isoformat(),
        },
        "caregivers": [
            {
                "given_name": "Jo",
                "family_name": "Example",
                "relationship": "mother",
                "phone": "07700 900000",
            }
        ],
        "postcode": "OX4 1AA",
        "concerns": {
            "codes": ["bonding_difficulties", "negative_feelings_towards_infant"],
            "description": "Finds it hard to feel close to the baby.",
            "duration_weeks": 6,
        },
        "risk_factors": ["domestic_abuse"],
        "safeguarding": {
            "immediate_risk": False,
            "child_protection_plan": False,
            "child_in_need_plan": False,
        },
        "diagnosis": None,
        "consent": {
            "caregiver_consent": True,
            "recorded_on": (today - timedelta(days=1)).isoformat(),
        },
        "referrer_urgency": "routine",
        "services_involved": ["health_visiting"],
    }
