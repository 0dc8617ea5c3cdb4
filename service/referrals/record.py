"""A stored referral as plain data, derived from the table model so its columns live in one place.

The hot paths read and write with SQLAlchemy Core, not the ORM: building an ORM instance costs
about 20 times a slotted dataclass. So the record type is a frozen dataclass made from the
table's own columns at import time; type checkers see the table model's typed attributes.
Adding a column is one edit to `service/models.py` (and a migration).
"""

from __future__ import annotations

from dataclasses import make_dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime

from service.core.canonical import as_utc
from service.models import REFERRALS, Referral

COLUMNS: tuple[str, ...] = tuple(c.name for c in REFERRALS.columns)
# What never changes after intake and is large: left out of replay snapshots.
_IMMUTABLE_BODY = frozenset({"payload", "decision", "payload_version"})
_TIMES = frozenset(c.name for c in REFERRALS.columns if isinstance(c.type, DateTime))

if TYPE_CHECKING:
    ReferralRecord = Referral
else:
    ReferralRecord = make_dataclass(
        "ReferralRecord", [(name, Any) for name in COLUMNS], frozen=True, slots=True
    )
    ReferralRecord.__doc__ = "A stored referral: one attribute per column of `referrals`."


def record_from_row(row: Any) -> ReferralRecord:
    record: ReferralRecord = ReferralRecord(**row._mapping)
    return record


def with_changes(record: ReferralRecord, **changes: Any) -> ReferralRecord:
    changed: ReferralRecord = replace(record, **changes)
    return changed


def column_values(record: ReferralRecord) -> dict[str, Any]:
    # Not dataclasses.asdict: that deep-copies the payload and decision on every insert.
    return {name: getattr(record, name) for name in COLUMNS}


def response_snapshot(record: ReferralRecord) -> dict[str, Any]:
    """The changeable columns as a response shows them now, as JSON (for idempotent replays)."""
    snapshot: dict[str, Any] = {}
    for name in COLUMNS:
        if name in _IMMUTABLE_BODY:
            continue
        value = getattr(record, name)
        snapshot[name] = as_utc(value).isoformat() if name in _TIMES else _jsonable(value)
    return snapshot


def as_answered(record: ReferralRecord, snapshot: dict[str, Any] | None) -> ReferralRecord:
    """The record as the response that took `snapshot` showed it (unknown columns ignored)."""
    if not snapshot:
        return record
    known = {k: v for k, v in snapshot.items() if k in COLUMNS and k not in _IMMUTABLE_BODY}
    for name in _TIMES & known.keys():
        known[name] = datetime.fromisoformat(known[name])
    return with_changes(record, **known)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
