"""REFERRAL_DATABASE_URL as deployers write it, turned into the URL of an async driver.

Every other PostgreSQL tool takes `postgresql://…` and `sslmode=`; SQLAlchemy reads a plain
`postgresql://` as psycopg2 and `sqlite:///` as the blocking pysqlite driver, and asyncpg takes
`ssl=` instead of `sslmode=`. Without this, a deployer's first URL dies at the first connection
with a long traceback. Messages here never repeat the URL: it holds the password.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from sqlalchemy.engine import URL, make_url

POSTGRES_DRIVER = "postgresql+asyncpg"
SQLITE_DRIVER = "sqlite+aiosqlite"

_DRIVERS = {
    "postgresql": POSTGRES_DRIVER,
    "postgres": POSTGRES_DRIVER,
    POSTGRES_DRIVER: POSTGRES_DRIVER,
    "postgres+asyncpg": POSTGRES_DRIVER,
    "sqlite": SQLITE_DRIVER,
    SQLITE_DRIVER: SQLITE_DRIVER,
}
_EXPECTED = "use postgresql://user:password@host:5432/db or sqlite:///path/to/file.db"

# libpq's sslmode values, which asyncpg's `ssl` accepts as strings.
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
TLS_QUERY_KEYS = frozenset({"ssl", "sslmode"})
# Query parameters asyncpg (through SQLAlchemy) understands; any other would be passed to
# asyncpg.connect() as an unexpected keyword and fail at the first connection.
_POSTGRES_QUERY_KEYS = frozenset({"ssl", "prepared_statement_cache_size"})


def normalise_database_url(value: str) -> str:
    """The same database behind the async driver, or ValueError saying what to write instead."""
    try:
        url = make_url(value)
    except Exception:  # noqa: BLE001 - ArgumentError, or ValueError for a bad port
        raise ValueError(f"not a database URL; {_EXPECTED}") from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        backend, _, dbapi = url.drivername.partition("+")
        if backend in ("postgresql", "postgres", "sqlite") and dbapi:
            raise ValueError(
                f"driver {dbapi!r} is not supported (the service uses asyncpg and aiosqlite); "
                f"write {backend}:// without a driver"
            )
        raise ValueError(f"unsupported database {backend!r}; {_EXPECTED}")
    url = url.set(drivername=driver)
    if driver == POSTGRES_DRIVER:
        url = _asyncpg_query(url)
    return url.render_as_string(hide_password=False)


def _asyncpg_query(url: URL) -> URL:
    query = dict(url.query)
    if "sslmode" in query:
        if "ssl" in query:
            raise ValueError("give only one of ssl= and sslmode=")
        query["ssl"] = query.pop("sslmode")
    for key, mode in query.items():
        if key not in _POSTGRES_QUERY_KEYS:
            hint = " (use REFERRAL_DATABASE_SSL_ROOT_CERT)" if key == "sslrootcert" else ""
            raise ValueError(f"query parameter {key!r} is not supported{hint}")
        if key == "ssl" and mode not in SSL_MODES:
            raise ValueError(f"ssl must be one of {', '.join(sorted(SSL_MODES))}")
    return url.set(query=query)


def check_root_cert(path: Path) -> None:
    """ValueError unless `path` is a readable file of PEM certificates."""
    try:
        root_cert_context(path, check_hostname=True)
    except ssl.SSLError:  # before OSError, of which it is a kind
        raise ValueError(f"{path} holds no PEM certificate") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror or 'not a file'})") from None


def root_cert_context(path: Path, *, check_hostname: bool) -> ssl.SSLContext:
    """A client TLS context trusting only the CA certificates in `path`."""
    context = ssl.create_default_context(cafile=str(path))
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context
