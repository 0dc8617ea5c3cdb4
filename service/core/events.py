"""Domain events: what a use case announces inside its transaction, for whoever listens.

Referrals publish here and notifications listen, so neither imports the other (core imports
no other domain). Listeners are handed to the unit of work by whoever builds it, and run on
the same session as the change: a listener's writes (the webhook outbox) commit or roll back
with the change and its audit event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

REFERRAL_CREATED = "referral.created"
REFERRAL_SAFEGUARDING_ALERT = "referral.safeguarding_alert"
REFERRAL_STATUS_CHANGED = "referral.status_changed"

_LISTENERS = "event_listeners"


@dataclass(frozen=True, slots=True)
class ReferralEvent:
    """Something that happened to a referral. `data` holds ids, codes and flags only: it may be
    sent to other organisations' systems, so never anything personal."""

    type: str
    referral_id: str
    org: str  # the referring organisation
    # Whether the referring organisation hears of it too (status changes), or only the team.
    to_referrer: bool
    urgent: bool  # a safeguarding alert: before anything else that is waiting
    at: datetime
    data: dict[str, Any]


Listener = Callable[[AsyncSession, Sequence[ReferralEvent]], Awaitable[None]]


def listen(session: AsyncSession, listeners: Sequence[Listener]) -> None:
    """Attach listeners to a session (the unit of work does, as it opens the transaction)."""
    session.info[_LISTENERS] = tuple(listeners)


async def publish(session: AsyncSession, events: Sequence[ReferralEvent]) -> None:
    """Hand `events` to every listener of this session, in this transaction."""
    if not events:
        return
    listeners: tuple[Listener, ...] = session.info.get(_LISTENERS, ())
    for listener in listeners:
        await listener(session, events)
