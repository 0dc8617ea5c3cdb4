"""Fixtures for the API tests: a problem+json checker and a pinned service clock."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}
# What a Python traceback or a framework error page would leave in a body.
_STACK_TRACE = re.compile(r'Traceback \(most recent call last\)|File "[^"]+", line \d+|\.py:\d+')
LONDON = ZoneInfo("Europe/London")

ProblemCheck = Callable[..., dict[str, Any]]


def _check_problem(
    response: httpx.Response, status: int, *, fields: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Assert `response` is an RFC 9457 problem with `status`; return its body.

    For a 422 every name in `fields` must be among the `errors[].field` values.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert not _STACK_TRACE.search(response.text), response.text
    body = response.json()
    assert PROBLEM_KEYS <= set(body), body
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"].startswith(("https://", "about:"))
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    if status == 422:
        errors = body.get("errors")
        assert isinstance(errors, list) and errors, f"a 422 must list errors[]: {body}"
        for error in errors:
            assert set(error) == {"field", "message"}, error
            assert isinstance(error["field"], str) and error["field"]
            assert isinstance(error["message"], str) and error["message"]
        named = {error["field"] for error in errors}
        missing = set(fields) - named
        assert not missing, f"{sorted(missing)} not named in {errors}"
    else:
        assert not fields, "only a 422 names fields"
    return body


@pytest.fixture
def problem() -> ProblemCheck:
    """problem(response, status, fields=(...)) -> the problem body, after checking its shape."""
    return _check_problem


ClockPin = Callable[[datetime], None]


@pytest.fixture
def pin_clock(app: FastAPI) -> ClockPin:
    """pin_clock(moment): the service's clock reads `moment` (aware) until pinned again."""

    def pin(moment: datetime) -> None:
        assert moment.tzinfo is not None
        app.state.services.clock = lambda: moment

    return pin


@pytest.fixture
def service_today(pin_clock: ClockPin) -> date:
    """Pin the service's clock to now and return its 'today' (Europe/London by default), so
    date boundaries cannot drift across midnight between the test and the service."""
    now = datetime.now(UTC)
    pin_clock(now)
    return now.astimezone(LONDON).date()
