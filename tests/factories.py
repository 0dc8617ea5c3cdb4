"""Request bodies built from one valid referral plus overrides, instead of copied JSON."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any

_MISSING = object()


def today() -> date:
    return date.today()


def make_referral_body(**overrides: Any) -> dict[str, Any]:
    """A valid referral that the default rules step up (score 3: domestic abuse + 6 weeks).

    Overrides use double underscores for nesting (`infant__nhs_number="..."`, list items by
    index: `caregivers__0__phone`); the value `REMOVE` deletes the key.
    """
    born = today() - timedelta(days=120)
    body: dict[str, Any] = {
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
            "date_of_birth": born.isoformat(),
        },
        "caregivers": [
            {
                "given_name": "Jo",
                "family_name": "Example",
                "relationship": "mother",
                "phone": "07700 900000",
                "nhs_number": None,
            }
        ],
        "postcode": "OX4 1AA",
        "concerns": {
            "codes": ["bonding_difficulties"],
            "description": "Hard to feel close.",
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
            "recorded_on": (today() - timedelta(days=1)).isoformat(),
        },
        "referrer_urgency": "routine",
        "services_involved": ["health_visiting"],
    }
    body = copy.deepcopy(body)
    for path, value in overrides.items():
        *parents, leaf = path.split("__")
        target = body
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is REMOVE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return body


REMOVE = _MISSING
