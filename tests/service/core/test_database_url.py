"""REFERRAL_DATABASE_URL as other tools write it, and the TLS settings beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.database_url import normalise_database_url
from service.core.settings import ConfigurationError, DatabaseSslMode, load_settings
from tests.ops.certificates import write_self_signed_ca


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    return write_self_signed_ca(tmp_path / "ca.pem")


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/referrals", "postgresql+asyncpg://u:p@db:5432/referrals"),
        ("postgres://u:p@db/referrals", "postgresql+asyncpg://u:p@db/referrals"),
        ("postgres+asyncpg://u@db/referrals", "postgresql+asyncpg://u@db/referrals"),
        ("postgresql+asyncpg://u@db/referrals", "postgresql+asyncpg://u@db/referrals"),
        # libpq's sslmode= is asyncpg's ssl=, with the same values.
        ("postgresql://u@db/r?sslmode=verify-full", "postgresql+asyncpg://u@db/r?ssl=verify-full"),
        ("postgresql://u@db/r?ssl=require", "postgresql+asyncpg://u@db/r?ssl=require"),
        # A password with URL-special characters survives the round trip, still escaped.
        ("postgresql://u:p%40ss%2Fw@db/r", "postgresql+asyncpg://u:p%40ss%2Fw@db/r"),
        ("sqlite:///var/referrals.db", "sqlite+aiosqlite:///var/referrals.db"),
        ("sqlite:////srv/referrals.db", "sqlite+aiosqlite:////srv/referrals.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_plain_forms_use_the_async_drivers(given: str, used: str) -> None:
    assert normalise_database_url(given) == used
    assert load_settings(env="development", database_url=given).database_url == used


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("postgresql+psycopg2://u:pw@db/r", "driver 'psycopg2' is not supported"),
        ("postgresql+psycopg://u:pw@db/r", "driver 'psycopg' is not supported"),
        ("sqlite+pysqlite:///x.db", "driver 'pysqlite' is not supported"),
        ("mysql://u:pw@db/r", "unsupported database 'mysql'"),
        ("oracle+oracledb://u:pw@db/r", "unsupported database 'oracle'"),
        ("", "not a database URL"),
        ("db.example:5432/r", "not a database URL"),
        ("postgresql://u@db/r?ssl=require&sslmode=require", "only one of ssl= and sslmode="),
        ("postgresql://u@db/r?application_name=x", "query parameter 'application_name'"),
        ("postgresql://u@db/r?ssl=on", "ssl must be one of"),
    ],
)
def test_anything_else_is_refused_naming_the_setting(given: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env="development", database_url=given)
    message = str(caught.value)
    assert message.startswith("invalid configuration: REFERRAL_DATABASE_URL: ")
    assert reason in message
    assert "pw" not in message.removeprefix("invalid configuration: ")
    assert "\n" not in message


def test_ssl_mode_defaults_to_verify_full() -> None:
    settings = load_settings(env="development", database_url="postgresql://u@db/r")
    assert settings.database_ssl_mode is DatabaseSslMode.verify_full


def test_root_cert_must_hold_a_certificate(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match=r"REFERRAL_DATABASE_SSL_ROOT_CERT: .*no PEM"):
        load_settings(
            env="development", database_url="postgresql://u@db/r", database_ssl_root_cert=not_pem
        )


def test_root_cert_is_for_postgresql_only(ca_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="REFERRAL_DATABASE_SSL_ROOT_CERT applies to"):
        load_settings(
            env="development", database_url="sqlite:///x.db", database_ssl_root_cert=ca_file
        )


def test_root_cert_excludes_ssl_in_the_url(ca_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="no ssl= in the URL"):
        load_settings(
            env="development",
            database_url="postgresql://u@db/r?sslmode=verify-full",
            database_ssl_root_cert=ca_file,
        )


def test_unknown_ssl_mode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="REFERRAL_DATABASE_SSL_MODE"):
        load_settings(env="development", database_ssl_mode="require")


def test_a_certificate_file_is_accepted_with_either_mode(ca_file: Path) -> None:
    for mode in ("verify-full", "verify-ca"):
        settings = load_settings(
            env="development",
            database_url="postgresql://u@db/r",
            database_ssl_root_cert=ca_file,
            database_ssl_mode=mode,
        )
        assert settings.database_ssl_mode == mode
