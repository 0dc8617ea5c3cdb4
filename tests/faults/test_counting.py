"""The fault suite's count can fail: an acknowledged referral that is not stored, and a key
answered with two different referrals, are both reported (so a green run means something)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import payload
from service.referrals import intake, repository
from tests.factories import make_referral_body
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


async def test_a_referral_stored_without_its_creation_event_is_reported(
    database_url: str,
    tmp_path: Path,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The chain verifies (nothing was appended, so nothing is broken), the referral is under
    # its key with the id the client was told: only its missing audit event is wrong.
    async def no_event(*_args: Any, **_kwargs: Any) -> None:
        return None

    monkeypatch.setattr(intake, "_audit_created", no_event)  # one transaction per intake

    async def store_without_events(db: Any, records: Any, keys: Any, _events: Any) -> None:
        for record in records:  # group commit (PostgreSQL): the batch's rows but no events
            await repository.insert_referral(db, record)
        for key in keys:
            await repository.insert_key(db, key)

    monkeypatch.setattr(repository, "store_many", store_without_events)
    headers = {**auth(org="RX1"), "Idempotency-Key": "key-1"}
    response = await client.post("/v1/referrals", json=make_referral_body(), headers=headers)
    assert response.status_code == 201, response.text
    ledger = Ledger(retry_statuses=frozenset())
    assert ledger.record(Caller("RX1", "not-used"), "key-1", response, 0.1) is True

    stored = await count_stored(database_url, payload.make_keypair(tmp_path), ledger)
    assert (stored.acknowledged, stored.stored, stored.lost, stored.duplicates) == (1, 1, 0, 0)
    assert stored.audit_valid
    assert stored.unaudited == 1
    assert any("creation event" in p for p in stored.problems())
