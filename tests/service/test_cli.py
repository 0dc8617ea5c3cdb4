"""The `referral-service` command line and start-up configuration."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from service.cli import main
from service.core.migrate import head_revision
from service.core.settings import ConfigurationError, load_settings
from service.models import AUDIT_EVENTS, IDEMPOTENCY_KEYS, REFERRALS
from tests.conftest import make_settings

KEY_SETTING = "REFERRAL_JWT_PUBLIC_KEY_FILE"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No REFERRAL_* settings from the outside, and ./var inside tmp_path."""
    for name in list(os.environ):
        # The test-database variable is not a setting; the fixtures have already read it.
        if name.startswith("REFERRAL_") and name != "REFERRAL_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def test_dev_token_is_accepted_by_the_app_in_development(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dev-token", "--org", "A81001", "--scope", "referrals:submit referrals:read"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2
    assert (tmp_path / "var" / "dev-keys" / "private.pem").exists()

    assert main(["example-referral"]) == 0
    body = json.loads(capsys.readouterr().out)

    settings = load_settings(env="development", database_url=sqlite_url(tmp_path / "dev.db"))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"Authorization": f"Bearer {token}"}
            listed = await http.get("/v1/referrals", headers=headers)
            assert listed.status_code == 200, listed.text
            created = await http.post("/v1/referrals", json=body, headers=headers)
            assert created.status_code == 201, created.text
            assert created.json()["organisation"] == "A81001"
            # Only the scopes asked for: no triage.
            audit = await http.get("/v1/audit-events", headers=headers)
            assert audit.status_code == 403


async def test_dev_token_is_refused_by_an_app_trusting_another_key(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], signing_key
) -> None:
    assert main(["dev-token"]) == 0
    token = capsys.readouterr().out.strip()
    settings = make_settings(sqlite_url(tmp_path / "prod.db"), signing_key.public_file)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/v1/referrals", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_migrate_brings_a_fresh_sqlite_file_to_head(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "fresh" / "referrals.db"
    clean_env.setenv("REFERRAL_DATABASE_URL", sqlite_url(database))
    clean_env.setenv("REFERRAL_ENV", "development")
    assert not database.exists()

    assert main(["migrate"]) == 0
    assert head_revision() in capsys.readouterr().out

    with sqlite3.connect(database) as connection:
        versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    connection.close()
    assert versions == [(head_revision(),)]
    assert {REFERRALS.name, IDEMPOTENCY_KEYS.name, AUDIT_EVENTS.name} <= tables

    # Running it again is harmless.
    assert main(["migrate"]) == 0
    with sqlite3.connect(database) as connection:
        again = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    connection.close()
    assert again == [(head_revision(),)]


async def test_example_referral_is_accepted_by_the_api(
    client: httpx.AsyncClient, auth, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()  # drop anything the app logged while starting
    assert main(["example-referral"]) == 0
    body = json.loads(capsys.readouterr().out)
    response = await client.post("/v1/referrals", json=body, headers=auth())
    assert response.status_code == 201, response.text
    assert response.json()["decision"]["outcome"] == "step_up"


def test_production_without_a_key_names_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=KEY_SETTING):
        load_settings()
    with pytest.raises(ConfigurationError, match=KEY_SETTING):
        load_settings(env="production")


def test_production_with_a_key_loads(clean_env: pytest.MonkeyPatch, signing_key) -> None:
    clean_env.setenv(KEY_SETTING, str(signing_key.public_file))
    settings = load_settings()
    assert settings.jwt_public_key_file == signing_key.public_file
    assert not settings.is_development


def test_command_line_refuses_to_start_without_a_key(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("REFERRAL_DATABASE_URL", sqlite_url(tmp_path / "never.db"))
    assert main(["migrate"]) == 2
    assert KEY_SETTING in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists()
