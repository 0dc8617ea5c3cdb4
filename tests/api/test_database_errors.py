"""Database conditions that mean "try again" are 503 with Retry-After; real faults stay 500."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from tests.factories import make_referral_body
from tests.intake_patch import replace_intake


class _DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter hands back: an error carrying the SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__("driver message that may quote SQL")
        self.sqlstate = sqlstate


def _wrapped(sqlstate: str) -> DBAPIError:
    return DBAPIError("INSERT INTO referrals ...", {}, _DriverError(sqlstate))


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(asyncpg.exceptions.CannotConnectNowError("starting up"), id="starting-up"),
        pytest.param(asyncpg.exceptions.TooManyConnectionsError("too many"), id="too-many"),
        pytest.param(asyncpg.exceptions.ConnectionDoesNotExistError("gone"), id="gone"),
        pytest.param(_wrapped("40P01"), id="deadlock"),
        pytest.param(_wrapped("40001"), id="serialisation-failure"),
        pytest.param(_wrapped("57014"), id="query-cancelled"),
    ],
)
async def test_try_again_conditions_are_503(
    client: httpx.AsyncClient, auth, problem, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def fail(_request: object) -> None:
        raise error

    replace_intake(monkeypatch, fail)
    response = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert "INSERT" not in response.text and "driver message" not in response.text


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(_wrapped("23505"), id="unique-violation"),
        pytest.param(asyncpg.exceptions.UndefinedTableError("no table"), id="undefined-table"),
    ],
)
async def test_a_real_database_fault_is_500(
    client: httpx.AsyncClient, auth, problem, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def fail(_request: object) -> None:
        raise error

    replace_intake(monkeypatch, fail)
    response = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    problem(response, 500)
    assert "retry-after" not in response.headers
