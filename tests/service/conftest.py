"""Fixtures for the token tests (all prefixed `token_` so they cannot clash with others)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from service.core.settings import Settings

TOKEN_ISSUER = "https://idp.test"
TOKEN_AUDIENCE = "referral-api-test"


@dataclass(frozen=True)
class TokenKeys:
    rsa: rsa.RSAPrivateKey
    rsa_private_pem: bytes
    rsa_public_file: Path
    ec: ec.EllipticCurvePrivateKey
    ec_private_pem: bytes
    ec_public_file: Path
    other_rsa_private_pem: bytes
    other_ec_private_pem: bytes


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture(scope="session")
def token_keys(tmp_path_factory: pytest.TempPathFactory) -> TokenKeys:
    """RSA-2048 and EC P-256 pairs, plus unrelated ones; made once (RSA generation is slow)."""
    directory = tmp_path_factory.mktemp("token-keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return TokenKeys(
        rsa=rsa_key,
        rsa_private_pem=_private_pem(rsa_key),
        rsa_public_file=_write_public(rsa_key, directory / "rsa-public.pem"),
        ec=ec_key,
        ec_private_pem=_private_pem(ec_key),
        ec_public_file=_write_public(ec_key, directory / "ec-public.pem"),
        other_rsa_private_pem=_private_pem(
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ),
        other_ec_private_pem=_private_pem(ec.generate_private_key(ec.SECP256R1())),
    )


@pytest.fixture
def token_settings(token_keys: TokenKeys) -> Callable[..., Settings]:
    """Build Settings from keyword arguments only; every JWT field is explicit so stray
    REFERRAL_* environment variables cannot change what a test means."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "production",
            "jwt_issuer": TOKEN_ISSUER,
            "jwt_audience": TOKEN_AUDIENCE,
            "jwt_public_key_file": token_keys.rsa_public_file,
            "jwt_jwks_url": None,
            "jwt_hs256_secret": None,
            "jwt_algorithms": ("RS256", "ES256"),
            "jwt_leeway_seconds": 30,
            "jwt_max_token_bytes": 8192,
            "jwks_cache_seconds": 300,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def token_claims() -> Callable[..., dict[str, Any]]:
    """A good claim set; keyword overrides replace claims, and a value of None removes one."""

    def build(**overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": TOKEN_ISSUER,
            "aud": TOKEN_AUDIENCE,
            "sub": "client-42",
            "org": "RX1",
            "scope": "referrals:submit referrals:read",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    return build


@pytest.fixture
def token_sign() -> Callable[..., str]:
    """Sign arbitrary claims with jose (a real issuer would), with optional extra headers."""

    def sign(
        claims: dict[str, Any],
        private_key_pem: bytes,
        *,
        alg: str = "RS256",
        headers: dict[str, Any] | None = None,
    ) -> str:
        return str(jwt.encode(claims, private_key_pem, algorithm=alg, headers=headers))

    return sign
