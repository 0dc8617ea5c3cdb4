"""Request bodies built from one valid referral plus overrides, instead of copied JSON."""

from __future__ import annotations

from datetime import date
from typing import Any

from service.referrals.examples import example_referral

_MISSING = object()


def today() -> date:
    return date.today()


def make_referral_body(**overrides: Any) -> dict[str, Any]:
    """A valid referral the default rules step up (score 3: domestic abuse + 6 weeks).

    Overrides use double underscores for nesting (`infant__nhs_number="..."`, list items by
    index: `caregivers__0__phone`); the value `REMOVE` deletes the key.
    """
    body = example_referral(today())
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
