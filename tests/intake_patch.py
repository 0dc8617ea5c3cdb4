"""Replace what intake does, whichever way the route goes in: one transaction per intake
(`intake.submit`, SQLite) or group commit (`IntakeBatches.submit`, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service.referrals import intake
from service.referrals.group_intake import IntakeBatches

Fake = Callable[[intake.IntakeRequest], Awaitable[Any]]


def replace_intake(monkeypatch: pytest.MonkeyPatch, fake: Fake) -> None:
    async def single(_session: object, request: intake.IntakeRequest) -> Any:
        return await fake(request)

    async def batched(_batches: object, request: intake.IntakeRequest) -> Any:
        return await fake(request)

    monkeypatch.setattr(intake, "submit", single)
    monkeypatch.setattr(IntakeBatches, "submit", batched)
