"""The record type follows the table; replay snapshots restore what the first response showed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from service.models import REFERRALS
from service.referrals.record import (
    COLUMNS,
    ReferralRecord,
    as_answered,
    column_values,
    response_snapshot,
    with_changes,
)

RECEIVED = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


def a_record() -> ReferralRecord:
    values: dict[str, Any] = {
        "id": "0b4c6a5e-5f55-4ac5-9c3f-1d3f3e9f6c11",
        "reference": "PIR-7K3M-Q9XD",
        "org": "RX1",
        "submitted_by": "hv-system",
        "received_at": RECEIVED,
        "updated_at": RECEIVED,
        "status": "awaiting_triage",
        "outcome": "step_up",
        "priority": "routine",
        "eligible": True,
        "provisional": True,
        "safeguarding_alert": False,
        "ruleset_id": "default",
        "ruleset_version": "2026.11",
        "ruleset_sha256": "a" * 64,
        "payload": {"infant": {"given_name": "Ada"}},
        "payload_version": 1,
        "decision": {"outcome": "step_up"},
        "version": 1,
        "triage": None,
        "withdrawal": None,
        "closure": None,
        "match_nhs_number": "9434765919",
        "match_name_key": "b" * 64,
    }
    assert set(values) == set(COLUMNS), "update this test's record when the table changes"
    return ReferralRecord(**values)


def test_the_record_has_exactly_the_tables_columns() -> None:
    fields = [f.name for f in dataclasses.fields(ReferralRecord)]
    assert fields == [c.name for c in REFERRALS.columns]


def test_column_values_are_every_column_for_the_insert() -> None:
    assert list(column_values(a_record())) == list(COLUMNS)


def test_a_snapshot_leaves_out_the_stored_body_and_is_json() -> None:
    snapshot = response_snapshot(a_record())
    assert {"payload", "decision", "payload_version"}.isdisjoint(snapshot)
    assert snapshot["received_at"] == "2026-12-01T09:30:15.123456+00:00"
    assert snapshot["status"] == "awaiting_triage"


def test_as_answered_puts_back_the_changeable_columns_as_they_were() -> None:
    first = a_record()
    snapshot = response_snapshot(first)
    later = with_changes(
        first,
        status="accepted",
        provisional=False,
        updated_at=RECEIVED + timedelta(days=2),
        payload={"infant": {"given_name": "Ada", "upcast": True}},
    )
    answered = as_answered(later, snapshot)
    assert answered.status == "awaiting_triage" and answered.provisional is True
    assert answered.updated_at == RECEIVED
    assert answered.payload == later.payload  # the body is the stored one, in today's shape


def test_a_key_without_a_snapshot_answers_with_the_record_as_it_is() -> None:
    record = a_record()
    assert as_answered(record, None) is record


def test_columns_a_later_release_added_to_a_snapshot_are_ignored() -> None:
    snapshot = {**response_snapshot(a_record()), "a_column_from_the_future": 1}
    assert as_answered(a_record(), snapshot) == a_record()
