"""Reason codes are the ruleset's data: published by GET /v1/pathway, enforced by the moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from eligibility import RulesetError, parse_ruleset
from tests.api.lifecycle.helpers import REFERRER, act, submit

DEFAULT_RULESET = Path("eligibility/rulesets/default.toml")


async def test_the_pathway_publishes_every_moves_reason_codes(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/pathway")
    assert response.status_code == 200
    codes = response.json()["lifecycle"]["reason_codes"]
    assert [c["code"] for c in codes["withdraw"]] == [
        "family_declined",
        "consent_withdrawn",
        "referred_elsewhere",
        "no_longer_needed",
        "entered_in_error",
        "other",
    ]
    assert "clinical_judgement" in [c["code"] for c in codes["triage"]]
    assert "intervention_completed" in [c["code"] for c in codes["close"]]
    assert all(c["label"] for move in codes.values() for c in move)


def _custom_ruleset(tmp_path: Path, withdraw: list[str]) -> Path:
    text = DEFAULT_RULESET.read_text()
    start = text.index("withdraw = [")
    end = text.index("]", start) + 1
    custom = tmp_path / "ours.toml"
    custom.write_text(text[:start] + f"withdraw = {withdraw!r}".replace("'", '"') + text[end:])
    return custom


async def test_a_rulesets_own_codes_are_the_ones_accepted(
    tmp_path: Path, settings: Any, auth: Any, problem: Any
) -> None:
    from api.app import create_app

    path = _custom_ruleset(tmp_path, ["moved_to_another_team"])
    app = create_app(settings.model_copy(update={"ruleset_path": path}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            referral = await submit(client, auth)
            default_code = {"reason": {"code": "family_declined"}}
            refused = await act(
                client, auth, referral["id"], "withdraw", default_code, version=1, who=REFERRER
            )
            problem(refused, 422, fields=("reason.code",))
            ours = {"reason": {"code": "moved_to_another_team"}}
            done = await act(
                client, auth, referral["id"], "withdraw", ours, version=1, who=REFERRER
            )
            assert done.status_code == 200, done.text


def test_an_empty_or_malformed_code_list_stops_the_ruleset_loading(tmp_path: Path) -> None:
    for bad in ([], ["Not A Code"]):
        path = _custom_ruleset(tmp_path, bad)
        with pytest.raises(RulesetError, match="lifecycle.withdraw"):
            parse_ruleset(path.read_bytes(), source=str(path))
