"""The referral's statuses and the moves between them (lifecycle.md): the one vocabulary.

No other module spells a status as a string: they import `ReferralStatus`, and what may happen
next is read from `MOVES`, so the move table of the contract lives in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReferralStatus(StrEnum):
    awaiting_triage = "awaiting_triage"
    accepted = "accepted"
    stepped_down = "stepped_down"
    signposted = "signposted"
    withdrawn = "withdrawn"
    closed = "closed"


class Action(StrEnum):
    """What people do to a referral after intake."""

    triage = "triage"
    withdraw = "withdraw"
    close = "close"


INITIAL_STATUS = ReferralStatus.awaiting_triage


@dataclass(frozen=True, slots=True)
class Move:
    """One row of the move table: `action` from `source` leads to `target`.

    `outcome` narrows a triage move to the clinician's outcome (step_up, step_down, signpost).
    """

    source: ReferralStatus
    action: Action
    target: ReferralStatus
    outcome: str | None = None


_S = ReferralStatus
MOVES: tuple[Move, ...] = (
    Move(_S.awaiting_triage, Action.triage, _S.accepted, "step_up"),
    Move(_S.awaiting_triage, Action.triage, _S.stepped_down, "step_down"),
    Move(_S.awaiting_triage, Action.triage, _S.signposted, "signpost"),
    Move(_S.stepped_down, Action.triage, _S.accepted, "step_up"),
    Move(_S.awaiting_triage, Action.withdraw, _S.withdrawn),
    Move(_S.accepted, Action.withdraw, _S.withdrawn),
    Move(_S.stepped_down, Action.withdraw, _S.withdrawn),
    Move(_S.accepted, Action.close, _S.closed),
    Move(_S.stepped_down, Action.close, _S.closed),
)

OPEN_STATUSES = frozenset({_S.awaiting_triage, _S.accepted, _S.stepped_down})
FINAL_STATUSES = frozenset(ReferralStatus) - OPEN_STATUSES


def actions_from(status: ReferralStatus) -> tuple[Action, ...]:
    """The actions the move table allows from `status`, in a stable order."""
    return tuple(a for a in Action if any(m.source is status and m.action is a for m in MOVES))
