"""Shared fixtures: a fresh database per test on SQLite and PostgreSQL, the app, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from api.app import create_app
from service.auth.devkeys import mint_token
from service.core.group_commit import GroupCommit
from service.core.settings import Settings
from tests.databases import PostgresDatabases, SqliteDatabases, backends, postgres_url

ISSUER = "https://idp.test.nhs.example"
AUDIENCE = "referral-api"
ALL_SCOPES = (
    "referrals:submit",
    "referrals:read",
    "referrals:triage",
    "audit:read",
    "audit:read_all",
    "webhooks:manage",
)
PARTNER_SCOPES = ("referrals:submit", "referrals:read")


@dataclass(frozen=True)
class SigningKey:
    private_pem: bytes
    public_file: Path


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = tmp_path_factory.mktemp("keys") / "public.pem"
    public_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(private_pem, public_file)


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    url = postgres_url()
    if url is None:
        yield None  # PostgreSQL is not under test here (CI always sets the URL)
        return
    databases = PostgresDatabases(url)
    yield databases
    databases.close()


@pytest.fixture(params=backends())
async def database_url(
    request: pytest.FixtureRequest,
    sqlite_databases: SqliteDatabases,
    postgres_databases: PostgresDatabases | None,
) -> AsyncIterator[str]:
    """A fresh migrated database for this test alone, on each backend under test."""
    if request.param == "sqlite":
        url = sqlite_databases.new()
        yield url
        sqlite_databases.drop(url)
    else:
        postgres = postgres_databases
        assert postgres is not None
        url = await postgres.new()
        yield url
        await postgres.drop(url)


def make_settings(database_url: str, public_key: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "database_url": database_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_public_key_file": public_key,
        "jwt_algorithms": "RS256",
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, signing_key: SigningKey) -> Settings:
    return make_settings(database_url, signing_key.public_file)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app for `settings`, started and stopped as a server would."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as http:
        yield http


def batch_sizes_of(monkeypatch: pytest.MonkeyPatch, batches: type[GroupCommit[Any]]) -> list[int]:
    """The size of every batch that `batches` (a group-commit class) runs from now on, so that a
    test can show its requests really shared one: requests that happened to go one by one
    would prove nothing."""
    sizes: list[int] = []
    run = batches._run

    async def counted(self: GroupCommit[Any], batch: list[Any]) -> None:
        sizes.append(len(batch))
        await run(self, batch)

    monkeypatch.setattr(batches, "_run", counted)
    return sizes


class DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter wraps: an error carrying a SQLSTATE, whose message
    quotes a value (which must never reach an answer or a log line)."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__("driver message quoting Jane Doe's row")
        self.sqlstate = sqlstate


TokenFactory = Callable[..., str]


@pytest.fixture
def token(signing_key: SigningKey) -> TokenFactory:
    """token(org="RX1", scopes=PARTNER_SCOPES, sub="hv-system", **claims) -> a signed JWT."""

    def make(
        org: str = "RX1",
        scopes: tuple[str, ...] = PARTNER_SCOPES,
        sub: str = "hv-system",
        **extra_claims: Any,
    ) -> str:
        return mint_token(
            private_key_pem=signing_key.private_pem,
            issuer=ISSUER,
            audience=AUDIENCE,
            sub=sub,
            org=org,
            scopes=scopes,
            now=datetime.now(UTC),
            extra_claims=extra_claims or None,
        )

    return make


@pytest.fixture
def auth(token: TokenFactory) -> Callable[..., dict[str, str]]:
    """auth(org=..., scopes=...) -> headers with a bearer token."""

    def headers(**kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(**kwargs)}"}

    return headers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.postgres_only` tests run only on the PostgreSQL parameter. Without
    PostgreSQL configured they are deselected, not skipped (CI always configures it)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_url") if callspec else None
        if item.get_closest_marker("postgres_only") and backend != "postgresql":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say plainly when PostgreSQL was not under test: a green SQLite-only run is half a run."""
    if postgres_url() is None:
        terminalreporter.write_line(
            "PostgreSQL was NOT tested: set REFERRAL_TEST_DATABASE_URL (as bash .ci/run does) "
            "to run every database test on PostgreSQL too.",
            yellow=True,
            bold=True,
        )
