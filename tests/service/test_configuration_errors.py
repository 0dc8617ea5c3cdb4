"""A deployer's first mistakes get one line naming the setting and exit status 2, from the real
`referral-service` command in a subprocess: never a traceback, never the password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.eligibility.factories import DEFAULT_TOML, variant_of
from tests.ops.servers import free_port

SERVICE = str(Path(sys.executable).with_name("referral-service"))
PASSWORD = "S3cret-Passw0rd"
# A CLI run that never reaches a database or a socket ends at once; this only stops a hang.
RUN_LIMIT_SECONDS = 120


def run_cli(command: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_")}
    # Development needs no token key, so that the setting under test is the only one wrong.
    env |= {"REFERRAL_ENV": "development", "REFERRAL_LOG_FORMAT": "json"}
    env |= {f"REFERRAL_{name.upper()}": value for name, value in settings.items()}
    if command[0] == "serve":
        command = [*command, "--port", str(free_port())]
    return subprocess.run(
        [SERVICE, *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_SECONDS,
        check=False,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    # `serve` must refuse before uvicorn starts, let alone binds.
    assert "Uvicorn running" not in result.stderr + result.stdout
    for text in expected:
        assert text in lines[0]
    return lines[0]


BAD_URLS = [
    pytest.param(
        f"postgresql+psycopg2://deployer:{PASSWORD}@db.example:5432/referrals",
        "driver 'psycopg2' is not supported",
        id="psycopg2-driver",
    ),
    pytest.param(
        f"mysql://deployer:{PASSWORD}@db.example/referrals",
        "unsupported database 'mysql'",
        id="mysql",
    ),
    pytest.param(
        f"deployer:{PASSWORD}@db.example/referrals",
        "not a database URL",
        id="garbage",
    ),
    pytest.param(
        f"postgresql://deployer:{PASSWORD}@db.example:port/referrals",
        "not a database URL",
        id="bad-port",
    ),
    pytest.param(
        f"postgresql://deployer:{PASSWORD}@db.example/referrals?sslrootcert=/etc/ca.pem",
        "query parameter 'sslrootcert' is not supported (use REFERRAL_DATABASE_SSL_ROOT_CERT)",
        id="libpq-only-parameter",
    ),
    pytest.param(
        f"postgresql://deployer:{PASSWORD}@db.example/referrals?sslmode=verify_full",
        "ssl must be one of",
        id="unknown-ssl-mode",
    ),
]


@pytest.mark.parametrize("command", ["migrate", "serve"])
@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_bad_database_url_is_one_line(tmp_path: Path, command: str, url: str, reason: str) -> None:
    result = run_cli([command], tmp_path, database_url=url)
    assert_one_line_refusal(result, "REFERRAL_DATABASE_URL", reason)


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_unreadable_root_certificate_is_one_line(tmp_path: Path, command: str) -> None:
    url = f"postgresql://deployer:{PASSWORD}@db.example/referrals"
    missing = tmp_path / "no-such-ca.pem"
    result = run_cli([command], tmp_path, database_url=url, database_ssl_root_cert=str(missing))
    assert_one_line_refusal(result, "REFERRAL_DATABASE_SSL_ROOT_CERT", str(missing))


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+aiosqlite"])
def test_plain_sqlite_url_migrates(tmp_path: Path, scheme: str) -> None:
    result = run_cli(["migrate"], tmp_path, database_url=f"{scheme}:///{tmp_path / 'x.db'}")
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout


@pytest.mark.postgres_only
@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgres+asyncpg"])
def test_plain_postgresql_url_migrates(tmp_path: Path, database_url: str, scheme: str) -> None:
    url = make_url(database_url).set(drivername=scheme).render_as_string(hide_password=False)
    result = run_cli(["migrate"], tmp_path, database_url=f"{url}?sslmode=prefer")
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"database": "referral_no_such_database"}, "database does not exist"),
        ({"username": "referral_no_such_role", "password": PASSWORD}, "authentication failed"),
    ],
    ids=["wrong-database", "wrong-role"],
)
def test_migrate_refused_by_the_database_is_one_line(
    tmp_path: Path, database_url: str, change: dict[str, str], cause: str
) -> None:
    url = make_url(database_url).set(drivername="postgresql", **change)
    result = run_cli(["migrate"], tmp_path, database_url=url.render_as_string(hide_password=False))
    line = assert_one_line_refusal(result, "REFERRAL_DATABASE_URL", cause)
    for secret in change.values():
        assert secret not in line


def test_broken_ruleset_toml_stops_serve_with_one_line(tmp_path: Path) -> None:
    path = variant_of(DEFAULT_TOML, tmp_path, ("[thresholds]", "[thresholds"))
    result = run_cli(["serve"], tmp_path, ruleset_path=str(path))
    assert_one_line_refusal(result, "REFERRAL_RULESET_PATH", str(path), "not valid TOML")


def test_invalid_ruleset_stops_serve_with_one_line_naming_each_key(tmp_path: Path) -> None:
    path = variant_of(
        DEFAULT_TOML,
        tmp_path,
        ("step_up_score = 3 ", "step_up_score = -3 "),
        ("accepts_antenatal = true\n", ""),
    )
    result = run_cli(["serve"], tmp_path, ruleset_path=str(path))
    line = assert_one_line_refusal(result, "REFERRAL_RULESET_PATH", str(path))
    assert "eligibility.accepts_antenatal: Field required" in line
    assert "thresholds.step_up_score: Input should be greater than or equal to 0" in line


def test_misspelt_code_stops_serve_with_the_list_named(tmp_path: Path) -> None:
    path = variant_of(
        DEFAULT_TOML, tmp_path, ('    "domestic_abuse",\n', '    "domestic_abuze",\n')
    )
    result = run_cli(["serve"], tmp_path, ruleset_path=str(path))
    line = assert_one_line_refusal(result, "REFERRAL_RULESET_PATH", str(path))
    assert "codes.severe_risk_factors[1]: 'domestic_abuze' is probably misspelt" in line
    assert "labels.domestic_abuse" not in line


def test_missing_ruleset_file_stops_serve_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    result = run_cli(["serve"], tmp_path, ruleset_path=str(path))
    assert_one_line_refusal(result, "REFERRAL_RULESET_PATH", str(path), "cannot read")


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    "command", [["audit", "verify"], ["audit", "verify", "--full"], ["audit", "head"]]
)
@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"database": "referral_no_such_database"}, "database does not exist"),
        ({"username": "referral_no_such_role", "password": PASSWORD}, "authentication failed"),
    ],
    ids=["wrong-database", "wrong-role"],
)
def test_audit_commands_refused_by_the_database_are_one_line(
    tmp_path: Path, database_url: str, command: list[str], change: dict[str, str], cause: str
) -> None:
    url = make_url(database_url).set(drivername="postgresql", **change)
    result = run_cli(command, tmp_path, database_url=url.render_as_string(hide_password=False))
    line = assert_one_line_refusal(result, "REFERRAL_DATABASE_URL", "refused", cause)
    for secret in change.values():
        assert secret not in line


@pytest.mark.parametrize("command", [["audit", "verify"], ["audit", "head"]])
def test_audit_commands_without_a_database_to_reach_are_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    # Nothing listens on a free port: the connection is refused at once.
    url = f"postgresql://deployer:{PASSWORD}@127.0.0.1:{free_port()}/referrals"
    result = run_cli(command, tmp_path, database_url=url)
    assert_one_line_refusal(result, "REFERRAL_DATABASE_URL", "cannot connect to the database")


@pytest.mark.parametrize("ttl", ["86401", "0", "-5"])
def test_dev_token_longer_than_the_service_accepts_is_refused(tmp_path: Path, ttl: str) -> None:
    result = run_cli(["dev-token", "--ttl", ttl], tmp_path)
    assert_one_line_refusal(result, "--ttl", "REFERRAL_JWT_MAX_LIFETIME_SECONDS (86400)")
    assert result.stdout == ""


def test_dev_token_ttl_follows_the_configured_maximum(tmp_path: Path) -> None:
    refused = run_cli(["dev-token", "--ttl", "601"], tmp_path, jwt_max_lifetime_seconds="600")
    assert_one_line_refusal(refused, "REFERRAL_JWT_MAX_LIFETIME_SECONDS (600)")
    minted = run_cli(["dev-token", "--ttl", "600"], tmp_path, jwt_max_lifetime_seconds="600")
    assert minted.returncode == 0, minted.stderr
    assert minted.stdout.strip().count(".") == 2
