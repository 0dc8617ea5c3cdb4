"""The fault suite's count can fail: an acknowledged referral that is not stored, and a key
answered with two different referrals, are both reported (so a green run means something)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench import payload
from tests.faults.harness import Caller, Ledger, count_stored

pytestmark = pytest.mark.postgres_only


def answer(status: int, **body: str) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("POST", "http://x/"))


async def test_a_lost_and_a_doubled_referral_are_both_reported(
    database_url: str, tmp_path: Path
) -> None:
    caller = Caller("RX1", "not-used")
    ledger = Ledger(retry_statuses=frozenset({503}))
    assert ledger.record(caller, "key-1", answer(503), 0.1) is False  # sent again
    assert ledger.record(caller, "key-1", answer(201, id="first"), 0.1) is True
    assert ledger.record(caller, "key-1", answer(201, id="second"), 0.1) is True
    assert ledger.record(caller, "key-2", answer(500), 0.1) is True  # final, and unexpected
    assert ledger.unexpected() == 1
    assert ledger.without_retry_after == 1

    # Nothing of it is in the (empty) database.
    stored = await count_stored(database_url, payload.make_keypair(tmp_path), ledger)
    assert (stored.acknowledged, stored.stored, stored.lost) == (1, 0, 1)
    assert stored.duplicates == 1
    assert stored.audit_valid
    problems = stored.problems()
    assert any("not stored" in p for p in problems)
    assert any("duplicates" in p for p in problems)
