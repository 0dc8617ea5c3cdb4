"""The one Settings object: read once at start-up, from REFERRAL_* environment variables."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from service.core.database_url import TLS_QUERY_KEYS, check_root_cert, normalise_database_url

# Only asymmetric algorithms may ever verify a production token; HS256 exists for
# explicit local development with a shared secret and nothing else.
# python-jose 3.5 verifies these; it has no RSA-PSS (PS*) support.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
DEV_ONLY_ALGORITHMS = frozenset({"HS256"})

VAR_DIR = Path("var")


class Environment(StrEnum):
    production = "production"
    development = "development"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


class DatabaseSslMode(StrEnum):
    """How REFERRAL_DATABASE_SSL_ROOT_CERT is used: both modes verify the certificate chain;
    verify-full also checks that the certificate names the host we connected to."""

    verify_full = "verify-full"
    verify_ca = "verify-ca"


class ConfigurationError(RuntimeError):
    """Start-up configuration is missing or wrong; the message names the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REFERRAL_", extra="ignore", frozen=True)

    env: Environment = Environment.production
    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'referrals.db'}"
    # TLS to PostgreSQL with a CA file we name: the image has no home directory, so asyncpg's
    # default (~/.postgresql/root.crt) can never be found there.
    database_ssl_root_cert: Path | None = None
    database_ssl_mode: DatabaseSslMode = DatabaseSslMode.verify_full
    # A fixed pool: overflow connections are opened and closed under bursts, and each opening
    # costs a PostgreSQL backend; waiting briefly for a pooled connection is cheaper.
    db_pool_size: int = Field(default=10, ge=1, le=100)
    db_max_overflow: int = Field(default=0, ge=0, le=100)
    # PostgreSQL cancels a request's statement that runs longer (SQLSTATE 57014, a 503): one
    # slow query must not hold a pooled connection and its locks for ever. 0 = no limit.
    # Only the API's engine sets it; CLI commands (migrate, audit verify) run unbounded.
    db_statement_timeout_ms: int = Field(default=15000, ge=0, le=3_600_000)
    # PostgreSQL: concurrent intakes commit together, at most this many per transaction
    # (service/referrals/group_intake.py); 1 = one transaction per intake. SQLite: ignored.
    intake_batch_max: int = Field(default=32, ge=1, le=256)
    # PostgreSQL: the reads' audit events commit together, at most this many per transaction
    # (service/audit/group_append.py); 1 = each read's event in its own. SQLite: ignored.
    read_audit_batch_max: int = Field(default=64, ge=1, le=256)

    jwt_issuer: str = "https://dev.referrals.local"
    jwt_audience: str = "referral-api"
    jwt_public_key_file: Path | None = None
    jwt_jwks_url: str | None = None
    jwt_hs256_secret: str | None = None
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = ("RS256", "ES256")
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # The longest a token may live (exp - iat): a leaked token is only useful until it expires.
    jwt_max_lifetime_seconds: int = Field(default=86400, gt=0)
    jwt_max_token_bytes: int = Field(default=8192, ge=512, le=65536)
    jwks_cache_seconds: int = Field(default=300, ge=0, le=86400)

    ruleset_path: Path | None = None
    timezone: str = "Europe/London"
    max_body_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    log_format: LogFormat | None = None
    idempotency_ttl_hours: int = Field(default=48, ge=24, le=24 * 30)
    audit_head_log_seconds: int = Field(default=300, ge=0)
    retry_after_seconds: int = Field(default=5, ge=1, le=300)

    # Limits on callers (contract "Limits on callers"): per organisation, per organisation for
    # submissions, and per client address for requests without a valid token.
    rate_limits: str = "600/minute"
    rate_limits_submit: str = "60/minute"
    rate_limits_anonymous: str = "120/minute"
    # None: counters in memory (one instance). redis://… or rediss://…: shared by replicas.
    rate_limit_storage_url: str | None = None
    rate_limit_key_prefix: str = Field(default="referral-limits", min_length=1, max_length=64)

    # How `referral-service serve` binds; the container sets HOST=0.0.0.0.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # Prometheus metrics on their own port (no token; global counts), bound to `host` like the
    # API: keep it unreachable from outside the cluster. 0 = not served.
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    # What one instance holds: uvicorn answers 503 beyond max_connections concurrent
    # connections, closes idle keep-alive connections after keep_alive_seconds, and the body
    # of a request must keep arriving (each chunk within body_read_timeout_seconds) or it is
    # answered 408.
    max_connections: int = Field(default=1000, ge=1, le=100_000)
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    body_read_timeout_seconds: float = Field(default=30, gt=0, le=600)

    # Webhooks (notifications.md). ALLOW_INSECURE permits http:// and private addresses: for
    # tests and development only (start-up logs a warning). DISPATCHER=false leaves delivery
    # to `referral-service worker` (a separate Deployment).
    webhook_allow_insecure: bool = False
    webhook_dispatcher: bool = True
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Longer than the 15 s attempt timeout: a lease runs out only when its dispatcher died.
    webhook_lease_seconds: int = Field(default=60, ge=20, le=3600)
    webhook_batch_size: int = Field(default=20, ge=1, le=500)
    webhook_max_subscriptions: int = Field(default=25, ge=1, le=1000)
    # Finished deliveries (succeeded or failed) are kept this long for the deliveries log.
    webhook_retention_days: int = Field(default=30, ge=1, le=3650)
    # Fernet keys, comma-separated: signing secrets are stored sealed with the first, and
    # opened with any (service/notifications/sealing.py). Unset: stored as they are.
    webhook_secret_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()

    @field_validator("jwt_algorithms", "webhook_secret_keys", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_secret_keys")
    @classmethod
    def _secret_keys_are_fernet_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for n, key in enumerate(value, start=1):
            try:
                Fernet(key.get_secret_value())
            except (ValueError, TypeError):
                # Which one, never what it is.
                raise ValueError(
                    f"key {n} is not a Fernet key (32 url-safe base64-encoded bytes: "
                    "python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())')"
                ) from None
        return value

    @field_validator("rate_limits", "rate_limits_submit", "rate_limits_anonymous")
    @classmethod
    def _one_limit(cls, value: str) -> str:
        # Imported here: rate_limits imports these settings.
        from service.core.rate_limits import parse_limit

        parse_limit(value)
        return value

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0].removeprefix("async+") if "://" in value else ""
        if scheme not in ("redis", "rediss"):
            # The URL may carry a password: never echo it.
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("database_ssl_root_cert")
    @classmethod
    def _readable_root_cert(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_root_cert(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _database_tls_is_consistent(self) -> Settings:
        if self.database_ssl_root_cert is None:
            return self
        url = make_url(self.database_url)
        if url.get_backend_name() != "postgresql":
            raise ValueError("REFERRAL_DATABASE_SSL_ROOT_CERT applies to PostgreSQL only")
        if TLS_QUERY_KEYS & set(url.query):
            raise ValueError(
                "REFERRAL_DATABASE_URL: no ssl= in the URL when REFERRAL_DATABASE_SSL_ROOT_CERT "
                "is set (REFERRAL_DATABASE_SSL_MODE says how it is verified)"
            )
        return self

    @model_validator(mode="after")
    def _keys_are_consistent(self) -> Settings:
        algorithms = set(self.jwt_algorithms)
        if not algorithms:
            raise ValueError("REFERRAL_JWT_ALGORITHMS must name at least one algorithm")
        unknown = algorithms - ASYMMETRIC_ALGORITHMS - DEV_ONLY_ALGORITHMS
        if unknown or "none" in {a.lower() for a in algorithms}:
            raise ValueError(f"REFERRAL_JWT_ALGORITHMS has unsupported {sorted(unknown)}")
        symmetric = bool(algorithms & DEV_ONLY_ALGORITHMS) or self.jwt_hs256_secret is not None
        if symmetric:
            if self.env is not Environment.development:
                raise ValueError(
                    "REFERRAL_JWT_HS256_SECRET / HS256 are allowed only with "
                    "REFERRAL_ENV=development"
                )
            if self.jwt_public_key_file or self.jwt_jwks_url or algorithms & ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    "HS256 (REFERRAL_JWT_HS256_SECRET) may never be combined with an "
                    "asymmetric key or algorithm"
                )
            if not self.jwt_hs256_secret or len(self.jwt_hs256_secret) < 32:
                raise ValueError("REFERRAL_JWT_HS256_SECRET must be at least 32 characters")
        if self.jwt_public_key_file and self.jwt_jwks_url:
            raise ValueError(
                "set only one of REFERRAL_JWT_PUBLIC_KEY_FILE and REFERRAL_JWT_JWKS_URL"
            )
        if (
            self.env is not Environment.development
            and not self.jwt_public_key_file
            and not self.jwt_jwks_url
        ):
            raise ValueError(
                "REFERRAL_JWT_PUBLIC_KEY_FILE or REFERRAL_JWT_JWKS_URL is required "
                "unless REFERRAL_ENV=development"
            )
        return self

    @property
    def is_development(self) -> bool:
        return self.env is Environment.development

    @property
    def effective_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return LogFormat.console if self.is_development else LogFormat.json

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def dev_key_dir(self) -> Path:
        return VAR_DIR / "dev-keys"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning a bad value into a ConfigurationError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigurationError(f"invalid configuration: {problems}") from None


def _describe(err: Any) -> str:
    # Field errors name the variable; cross-field errors already name theirs in the message.
    message = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:
        return message
    return f"REFERRAL_{'_'.join(str(p) for p in err['loc']).upper()}: {message}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
