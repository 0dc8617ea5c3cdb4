"""Signing keys the service trusts: a PEM file, or a JWKS fetched, cached and refreshed.

Only python-jose key objects leave this module, each built for exactly one algorithm.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jose import jwk

from service.core.settings import ConfigurationError

logger = logging.getLogger("service.auth.tokens")

KeysByAlg = dict[str, Any]  # alg -> a constructed jose key, built once and reused


class KeysUnavailable(Exception):
    """No key can check this token; `reason` is fixed text, safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# What python-jose 3.5 can verify, per key type. PS256 is absent: jose has no PSS support.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
_EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_JWK_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
VERIFIABLE_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHM_BY_CURVE.values()) | {"HS256"}
_MIN_RSA_BITS = 2048

JWKS_TIMEOUT_SECONDS = 3.0
# No JWKS fetch starts within this long of the previous attempt, whatever the trigger
# (expiry, unknown kid, earlier failure): forged kids cannot make us hammer the IdP.
JWKS_MIN_FETCH_INTERVAL_SECONDS = 10.0
# While the IdP is unreachable, keys it served stay trusted this much past their TTL.
JWKS_STALE_GRACE_SECONDS = 900.0
_JWKS_MAX_BYTES = 256 * 1024
_JWKS_MAX_BYTES = 256 * 1024
_JWKS_MAX_KEYS = 64


class JwksKeys:
    """Keys from a JWKS URL, chosen by `kid`: cached, refreshed at most every
    JWKS_MIN_FETCH_INTERVAL_SECONDS, and trusted past their TTL only within a bounded grace."""

    def __init__(
        self,
        url: str,
        algorithms: frozenset[str],
        cache_seconds: float,
        http_client: httpx.AsyncClient | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jwks_url = url
        self._jwks_algorithms = algorithms
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=JWKS_TIMEOUT_SECONDS)
        self._clock = clock
        self._jwks: dict[str, KeysByAlg] | None = None
        self._jwks_fetched_at = 0.0
        self._jwks_attempted_at: float | None = None
        self._jwks_ttl = max(cache_seconds, JWKS_MIN_FETCH_INTERVAL_SECONDS)
        self._jwks_lock = asyncio.Lock()

    async def aclose(self) -> None:
        # A client passed in belongs to the caller, who closes it.
        if self._owns_http:
            await self._http.aclose()

    async def key_for(self, alg: str, kid: str | None) -> Any:
        if not kid:
            raise KeysUnavailable("token has no key id")
        if self._jwks is None or self._clock() - self._jwks_fetched_at >= self._jwks_ttl:
            # While one request refreshes, the rest keep using keys still within the grace
            # rather than queueing behind a slow IdP.
            if not (self._jwks_lock.locked() and self._usable_jwks() is not None):
                await self._refresh_jwks()
        keys = self._usable_jwks()
        if keys is None:
            raise KeysUnavailable("signing keys unavailable")
        entry = keys.get(kid)
        if entry is None:
            # Perhaps a key rotation: refetch, but no sooner than the rate limit allows.
            await self._refresh_jwks()
            keys = self._usable_jwks()
            entry = keys.get(kid) if keys is not None else None
            if entry is None:
                raise KeysUnavailable("unknown signing key")
        key = entry.get(alg)
        if key is None:
            raise KeysUnavailable("algorithm not allowed for this key")
        return key

    def _usable_jwks(self) -> dict[str, KeysByAlg] | None:
        if self._jwks is None:
            return None
        if self._clock() - self._jwks_fetched_at >= self._jwks_ttl + JWKS_STALE_GRACE_SECONDS:
            return None
        return self._jwks

    async def _refresh_jwks(self) -> None:
        async with self._jwks_lock:
            now = self._clock()
            if (
                self._jwks_attempted_at is not None
                and now - self._jwks_attempted_at < JWKS_MIN_FETCH_INTERVAL_SECONDS
            ):
                return  # another request just fetched (or failed to): use what we have
            self._jwks_attempted_at = now
            try:
                keys = await self._fetch_jwks()
            except Exception as exc:
                # Keep the old keys: _usable_jwks bounds how long they stay trusted.
                logger.warning("JWKS fetch failed: %s", type(exc).__name__)
                return
            self._jwks = keys
            self._jwks_fetched_at = now

    async def _fetch_jwks(self) -> dict[str, KeysByAlg]:
        body = bytearray()
        async with asyncio.timeout(JWKS_TIMEOUT_SECONDS * 2):
            async with self._http.stream(
                "GET",
                self._jwks_url,
                headers={"Accept": "application/json"},
                timeout=JWKS_TIMEOUT_SECONDS,
                follow_redirects=False,
            ) as response:
                response.raise_for_status()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _JWKS_MAX_BYTES:
                        raise ValueError("JWKS document too large")
        document = json.loads(body)
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS document has no keys list")
        keys: dict[str, KeysByAlg] = {}
        ambiguous: set[str] = set()
        for entry in entries[:_JWKS_MAX_KEYS]:
            usable = _keys_from_jwk(entry, self._jwks_algorithms)
            if usable is None:
                continue
            kid, by_alg = usable
            if kid in keys:
                ambiguous.add(kid)  # two keys under one kid: refuse rather than guess
            keys[kid] = by_alg
        for kid in ambiguous:
            del keys[kid]
        if not keys:
            raise ValueError("JWKS document has no usable signing key")
        return keys


def algorithms_for(public_key: object, allowed: frozenset[str]) -> frozenset[str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < _MIN_RSA_BITS:
            return frozenset()
        return allowed & _RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        # RFC 7518 ties each ES algorithm to one curve.
        alg = _EC_ALGORITHM_BY_CURVE.get(public_key.curve.name)
        return allowed & {alg} if alg else frozenset()
    return frozenset()


def keys_from_pem(path: Path, setting: str, allowed: frozenset[str]) -> KeysByAlg:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read the key file ({exc.strerror})") from None
    if b"PRIVATE KEY" in data:
        # The API must never hold the signing key; refuse rather than derive from it.
        raise ConfigurationError(f"{setting} must hold a public key, not a private key")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            public_key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            public_key = load_pem_public_key(data)
    except ValueError:
        raise ConfigurationError(f"{setting} is not a PEM public key or certificate") from None
    algorithms = algorithms_for(public_key, allowed)
    if not algorithms:
        raise ConfigurationError(
            f"{setting}: the key (RSA ≥ {_MIN_RSA_BITS} bits or EC P-256/384/521) fits none "
            "of REFERRAL_JWT_ALGORITHMS"
        )
    return {alg: jwk.construct(public_key, alg) for alg in sorted(algorithms)}


def _b64_int(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("JWK member is not a string")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _keys_from_jwk(entry: object, allowed: frozenset[str]) -> tuple[str, KeysByAlg] | None:
    """A JWKS entry as (kid, alg -> key), or None when it is not for us to trust."""
    if not isinstance(entry, dict):
        return None
    kid, kty, use, alg, crv = (entry.get(k) for k in ("kid", "kty", "use", "alg", "crv"))
    if not isinstance(kid, str) or not kid or "d" in entry:
        return None  # no kid to select it by, or a private key that should never be published
    if use not in (None, "sig") or not (alg is None or (isinstance(alg, str) and alg in allowed)):
        return None
    public_key: object
    try:
        if kty == "RSA":
            numbers = rsa.RSAPublicNumbers(_b64_int(entry.get("e")), _b64_int(entry.get("n")))
            public_key = numbers.public_key()
        elif kty == "EC" and isinstance(crv, str) and crv in _JWK_CURVES:
            x, y = _b64_int(entry.get("x")), _b64_int(entry.get("y"))
            # Raises if the point is not on the curve (invalid-curve attacks).
            public_key = ec.EllipticCurvePublicNumbers(x, y, _JWK_CURVES[crv]).public_key()
        else:
            return None  # "oct" and friends: a symmetric key is never taken from a JWKS
    except (ValueError, binascii.Error):
        return None
    algorithms = algorithms_for(public_key, allowed if alg is None else frozenset({alg}))
    if not algorithms:
        return None
    return kid, {a: jwk.construct(public_key, a) for a in sorted(algorithms)}
