"""The short form of the fault suite, so that every `make test` keeps it true: the same scenario
functions `make faults` runs, with fewer kills and a shorter outage. Nothing acknowledged may be
lost or stored twice, and the audit trail must verify.

PostgreSQL only: the database outage needs a server to lose, and the kills concern the
concurrent writers SQLite does not have (deselected without PostgreSQL; CI always has it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.kill9 import kill9
from tests.faults.outage import database_outage

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


async def test_kill_9_of_the_whole_server_loses_and_duplicates_nothing(
    database_url: str, tmp_path: Path
) -> None:
    figures = await kill9(database_url, tmp_path, rounds=3, clients=8, seed=14)
    assert figures.problems() == [], figures.line()
    assert figures.killed_processes == 3 * 3  # uvicorn's parent and its two workers, each time
    assert figures.stored.acknowledged > 0
    assert figures.stored.stored == figures.stored.acknowledged == figures.stored.referrals
    assert figures.stored.duplicates == figures.stored.orphans == 0
    assert figures.stored.audit_valid


async def test_a_database_outage_gives_only_503s_and_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    figures = await database_outage(
        database_url, tmp_path, outage_s=2.0, before_s=1.0, after_s=1.0, clients=8
    )
    assert figures.problems() == [], figures.line()
    assert figures.unavailable > 0  # the outage was felt
    assert figures.unexpected == figures.no_answer == figures.hung == 0
    assert figures.recovery_s is not None
    assert figures.stored.stored == figures.stored.acknowledged == figures.stored.referrals
    assert figures.stored.audit_valid
