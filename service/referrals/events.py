"""The events a referral's intake and moves publish (notifications.md): ids, codes, flags."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.core.events import (
    REFERRAL_CREATED,
    REFERRAL_SAFEGUARDING_ALERT,
    REFERRAL_STATUS_CHANGED,
    ReferralEvent,
)
from service.referrals.record import ReferralRecord


def _data(referral: ReferralRecord, previous_status: str | None) -> dict[str, Any]:
    # Never the payload, a comment or a name: every detail stays behind the authenticated,
    # audited read that `links.status` points to.
    return {
        "id": referral.id,
        "reference": referral.reference,
        "status": referral.status,
        "previous_status": previous_status,
        "outcome": referral.outcome,
        "priority": referral.priority,
        "provisional": referral.provisional,
        "safeguarding_alert": referral.safeguarding_alert,
        "version": referral.version,
        "links": {"status": f"/v1/referrals/{referral.id}/status"},
    }


def created(referral: ReferralRecord, at: datetime) -> list[ReferralEvent]:
    """A new referral, for the team; a safeguarding alert first, ahead of everything else."""
    data = _data(referral, None)
    made = [
        ReferralEvent(REFERRAL_CREATED, referral.id, referral.org, False, False, at, data),
    ]
    if referral.safeguarding_alert:
        alert = ReferralEvent(
            REFERRAL_SAFEGUARDING_ALERT, referral.id, referral.org, False, True, at, data
        )
        made.insert(0, alert)  # earlier in the referral's order, so nothing waits before it
    return made


def status_changed(
    referral: ReferralRecord, previous_status: str, at: datetime
) -> list[ReferralEvent]:
    """A move, for the referring organisation and the team."""
    data = _data(referral, previous_status)
    return [
        ReferralEvent(
            REFERRAL_STATUS_CHANGED,
            referral.id,
            referral.org,
            True,
            referral.safeguarding_alert,
            at,
            data,
        )
    ]
