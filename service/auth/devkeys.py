"""The local development signing key, and minting tokens with it (dev CLI, tests, benchmark)."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

PRIVATE_KEY_NAME = "private.pem"
PUBLIC_KEY_NAME = "public.pem"


def ensure_dev_keypair(directory: Path) -> tuple[Path, Path]:
    """Create an RSA-2048 pair in `directory` on first call and reuse it afterwards.

    Safe when several processes (uvicorn workers, the CLI) race: the private key is
    published with a hard link, which fails if another process got there first, so
    exactly one private key ever wins and everyone derives the public key from it.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_NAME
    public_path = directory / PUBLIC_KEY_NAME

    if not private_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _publish_exclusive(private_path, pem)
    # A copy or an old umask may have left the key readable by others; it signs tokens.
    if private_path.stat().st_mode & 0o077:
        private_path.chmod(0o600)

    # Always derive from whichever private key won, so the pair can never disagree
    # (e.g. after a crash between the two writes).
    private_key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        _write_atomic(public_path, public_pem, mode=0o644)
    return private_path, public_path


def _temp_sibling(path: Path, data: bytes, mode: int) -> Path:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL + explicit mode: the secret is never readable by others, not even briefly.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _publish_exclusive(path: Path, data: bytes) -> None:
    """Make `path` hold `data` unless it already exists; a loser keeps the winner's file."""
    temp = _temp_sibling(path, data, 0o600)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    temp = _temp_sibling(path, data, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def mint_token(
    *,
    private_key_pem: bytes,
    issuer: str,
    audience: str,
    sub: str,
    org: str,
    scopes: Iterable[str],
    ttl_seconds: int = 3600,
    kid: str = "dev",
    now: datetime | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign an RS256 access token with the claims the API expects.

    `extra_claims` is merged last, so it can also override a standard claim.
    """
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        # A naive time would silently be read as local time and skew exp by hours.
        raise ValueError("now must be timezone-aware")
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "org": org,
        "scope": " ".join(sorted(set(scopes))),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if extra_claims:
        claims.update(extra_claims)
    token = jwt.encode(claims, private_key_pem, algorithm="RS256", headers={"kid": kid})
    return str(token)
