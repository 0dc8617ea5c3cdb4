"""Bearer-token verification: the only module that touches python-jose or signing keys."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from service.devkeys import PUBLIC_KEY_NAME, ensure_dev_keypair
from service.settings import ConfigurationError, Settings

logger = logging.getLogger(__name__)

SCOPE_SUBMIT = "referrals:submit"
SCOPE_READ = "referrals:read"
SCOPE_TRIAGE = "referrals:triage"
SCOPE_AUDIT = "audit:read"
ALL_SCOPES = frozenset({SCOPE_SUBMIT, SCOPE_READ, SCOPE_TRIAGE, SCOPE_AUDIT})

# What python-jose 3.5 can verify, per key type. PS256 is absent: jose has no PSS support.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
_EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_JWK_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_VERIFIABLE = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHM_BY_CURVE.values()) | {"HS256"}
_MIN_RSA_BITS = 2048

JWKS_TIMEOUT_SECONDS = 3.0
# No JWKS fetch starts within this long of the previous attempt, whatever the trigger
# (expiry, unknown kid, earlier failure): forged kids cannot make us hammer the IdP.
JWKS_MIN_FETCH_INTERVAL_SECONDS = 10.0
# While the IdP is unreachable, keys it served stay trusted this much past their TTL.
JWKS_STALE_GRACE_SECONDS = 900.0
_JWKS_MAX_BYTES = 256 * 1024
VERIFIED_TOKEN_SECONDS = 60.0
VERIFIED_TOKENS_KEPT = 4096
_JWKS_MAX_KEYS = 64

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_ORG_CODE = re.compile(r"[A-Z0-9]{3,10}")
_MAX_SUB_LENGTH = 255

# Signature first, then the registered claims; sub must be a string (jose checks that).
_JOSE_OPTIONS = {
    "require_exp": True,
    "require_iss": True,
    "require_aud": True,
    "require_sub": True,
    "verify_exp": True,
    "verify_nbf": True,
    "verify_iat": True,
    "verify_iss": True,
    "verify_aud": True,
    "verify_sub": True,
}
# jose only says why in free text; these give callers a useful reason. Decisions never
# depend on the text: an unrecognised message still refuses, with a generic reason.
_JOSE_REASONS = (
    ("Signature verification failed", "invalid signature"),
    ("missing required key", "missing required claim"),
    ("Invalid audience", "wrong audience"),
    ("Invalid issuer", "wrong issuer"),
    ("not yet valid", "token not yet valid"),
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, from a verified token."""

    sub: str
    org: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


class InvalidToken(Exception):
    """The bearer token is missing or unacceptable; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # Fixed text only: never a claim value or part of the token.
        self.reason = reason


_KeysByAlg = dict[str, Any]  # alg -> a constructed jose key, built once and reused


class TokenVerifier:
    """Verifies bearer JWTs against the configured key, issuer and audience."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # `clock` (monotonic seconds) times the JWKS cache; tests inject a fake one.
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._max_bytes = settings.jwt_max_token_bytes
        self._leeway = settings.jwt_leeway_seconds
        self._options = {**_JOSE_OPTIONS, "leeway": settings.jwt_leeway_seconds}
        self._clock = clock
        allowed = frozenset(settings.jwt_algorithms)
        unsupported = allowed - _VERIFIABLE
        if unsupported:
            raise ConfigurationError(
                f"REFERRAL_JWT_ALGORITHMS: {sorted(unsupported)} cannot be verified by "
                "python-jose; remove them"
            )

        self._static_keys: _KeysByAlg | None = None
        self._jwks_algorithms: frozenset[str] = frozenset()
        self._jwks_url: str | None = None
        self._http: httpx.AsyncClient | None = None
        self._owns_http = False
        if settings.jwt_hs256_secret is not None:
            # Settings allows this only in development and never beside an asymmetric key;
            # checked again here because a forged token with a shared secret is game over.
            if not settings.is_development or allowed != {"HS256"}:
                raise ConfigurationError(
                    "REFERRAL_JWT_HS256_SECRET needs REFERRAL_ENV=development and "
                    "REFERRAL_JWT_ALGORITHMS=HS256"
                )
            self._static_keys = {"HS256": jwk.construct(settings.jwt_hs256_secret, "HS256")}
        elif settings.jwt_jwks_url is not None:
            if not settings.is_development and not settings.jwt_jwks_url.startswith("https://"):
                raise ConfigurationError("REFERRAL_JWT_JWKS_URL must be an https:// URL")
            self._jwks_url = settings.jwt_jwks_url
            self._jwks_algorithms = allowed - {"HS256"}
            if http_client is None:
                http_client = httpx.AsyncClient(timeout=JWKS_TIMEOUT_SECONDS)
                self._owns_http = True
            self._http = http_client
        else:
            if settings.jwt_public_key_file is not None:
                path, setting = settings.jwt_public_key_file, "REFERRAL_JWT_PUBLIC_KEY_FILE"
            else:
                # Only reachable in development: Settings refuses production without a key.
                _, path = ensure_dev_keypair(settings.dev_key_dir)
                setting = f"development key {settings.dev_key_dir / PUBLIC_KEY_NAME}"
            self._static_keys = _keys_from_pem(path, setting, allowed)

        self._allowed = (
            frozenset(self._static_keys) if self._static_keys is not None else self._jwks_algorithms
        )
        self._jwks: dict[str, _KeysByAlg] | None = None
        self._jwks_fetched_at = 0.0
        self._jwks_attempted_at: float | None = None
        self._jwks_ttl = max(float(settings.jwks_cache_seconds), JWKS_MIN_FETCH_INTERVAL_SECONDS)
        self._jwks_lock = asyncio.Lock()
        # token -> (caller, expiry in wall time, re-verify at on the monotonic clock)
        self._verified: OrderedDict[str, tuple[Caller, float, float]] = OrderedDict()

    async def aclose(self) -> None:
        # A client passed in belongs to the caller, who closes it.
        if self._owns_http and self._http is not None:
            await self._http.aclose()

    async def verify(self, token: str) -> Caller:
        # Everything before jwt.decode is cheap and refuses without touching key material.
        if not isinstance(token, str) or not token:
            raise InvalidToken("token missing")
        if len(token) > self._max_bytes:
            raise InvalidToken("token too large")
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, expires, recheck_at = remembered
            if time.time() < expires and self._clock() < recheck_at:
                return caller
            del self._verified[token]
        if not token.isascii() or not _COMPACT_JWS.fullmatch(token):
            raise InvalidToken("malformed token")
        alg, kid = _header(token[: token.index(".")])
        if alg not in self._allowed:
            raise InvalidToken("algorithm not allowed")
        if self._static_keys is not None:
            key = self._static_keys[alg]
        else:
            key = await self._jwks_key(alg, kid)
        try:
            # One key object built for exactly this alg, and algorithms pinned to it: the
            # header cannot pick HMAC-with-the-public-key or a different hash.
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options=self._options,
            )
        except ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except JWTError as exc:
            raise InvalidToken(_jose_reason(exc)) from None
        except Exception:
            # jose lets odd claim types escape (e.g. int() of a list); still a refusal.
            raise InvalidToken("malformed claims") from None
        caller = self._caller(claims)
        self._remember(token, caller, float(claims["exp"]))
        return caller

    def _remember(self, token: str, caller: Caller, expires: float) -> None:
        # Partner systems send the same token until it expires: verifying its signature again
        # on every request is the single largest cost of authentication. A verified token is
        # trusted from memory until it expires (with the leeway jose allows), and for at most
        # VERIFIED_TOKEN_SECONDS, so that a key withdrawn from the JWKS stops working soon.
        recheck_at = self._clock() + VERIFIED_TOKEN_SECONDS
        self._verified[token] = (caller, expires + self._leeway, recheck_at)
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)

    def _caller(self, claims: Mapping[str, Any]) -> Caller:
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_numeric_date(claims[name]):
                raise InvalidToken(f"invalid {name} claim")
        if "iat" in claims and claims["iat"] > time.time() + self._leeway:
            raise InvalidToken("token issued in the future")
        sub = claims["sub"]  # present and a string: jose checked
        if not sub.strip() or len(sub) > _MAX_SUB_LENGTH or not sub.isprintable():
            # It ends up in audit events and logs: no blanks, no control characters.
            raise InvalidToken("invalid sub claim")
        if "org" not in claims:
            raise InvalidToken("missing required claim")
        org = claims["org"]
        # fullmatch, not ^…$: "$" would let a trailing newline through.
        if not isinstance(org, str) or not _ORG_CODE.fullmatch(org):
            raise InvalidToken("invalid org claim")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("invalid scope claim")
        # Unknown scopes are ignored, so an IdP may add its own without breaking us.
        return Caller(sub=sub, org=org, scopes=ALL_SCOPES.intersection(scope.split(" ")))

    # --- JWKS -------------------------------------------------------------------------

    async def _jwks_key(self, alg: str, kid: str | None) -> Any:
        if not kid:
            raise InvalidToken("token has no key id")
        if self._jwks is None or self._clock() - self._jwks_fetched_at >= self._jwks_ttl:
            # While one request refreshes, the rest keep using keys still within the grace
            # rather than queueing behind a slow IdP.
            if not (self._jwks_lock.locked() and self._usable_jwks() is not None):
                await self._refresh_jwks()
        keys = self._usable_jwks()
        if keys is None:
            raise InvalidToken("signing keys unavailable")
        entry = keys.get(kid)
        if entry is None:
            # Perhaps a key rotation: refetch, but no sooner than the rate limit allows.
            await self._refresh_jwks()
            keys = self._usable_jwks()
            entry = keys.get(kid) if keys is not None else None
            if entry is None:
                raise InvalidToken("unknown signing key")
        key = entry.get(alg)
        if key is None:
            raise InvalidToken("algorithm not allowed for this key")
        return key

    def _usable_jwks(self) -> dict[str, _KeysByAlg] | None:
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

    async def _fetch_jwks(self) -> dict[str, _KeysByAlg]:
        assert self._http is not None and self._jwks_url is not None
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
        keys: dict[str, _KeysByAlg] = {}
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


# An issuer sends the same header on every token, so parsing it is cached (bounded;
# refusals raise and are not cached). Saves a few µs on the per-request path.
@lru_cache(maxsize=64)
def _header(segment: str) -> tuple[str | None, str | None]:
    """The (alg, kid) of a JWS header segment; each None when absent or not a string."""
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    if "crit" in header:
        # RFC 7515: an extension we do not understand must not be ignored.
        raise InvalidToken("unsupported critical header")
    alg, kid = header.get("alg"), header.get("kid")
    return (alg if isinstance(alg, str) else None, kid if isinstance(kid, str) else None)


def _jose_reason(exc: JWTError) -> str:
    message = str(exc)
    for fragment, reason in _JOSE_REASONS:
        if fragment in message:
            return reason
    return "invalid claims" if isinstance(exc, JWTClaimsError) else "invalid token"


def _is_numeric_date(value: object) -> bool:
    # bool is an int subclass and a NaN or infinity is no date.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _algorithms_for(public_key: object, allowed: frozenset[str]) -> frozenset[str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < _MIN_RSA_BITS:
            return frozenset()
        return allowed & _RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        # RFC 7518 ties each ES algorithm to one curve.
        alg = _EC_ALGORITHM_BY_CURVE.get(public_key.curve.name)
        return allowed & {alg} if alg else frozenset()
    return frozenset()


def _keys_from_pem(path: Path, setting: str, allowed: frozenset[str]) -> _KeysByAlg:
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
    algorithms = _algorithms_for(public_key, allowed)
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


def _keys_from_jwk(entry: object, allowed: frozenset[str]) -> tuple[str, _KeysByAlg] | None:
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
    algorithms = _algorithms_for(public_key, allowed if alg is None else frozenset({alg}))
    if not algorithms:
        return None
    return kid, {a: jwk.construct(public_key, a) for a in sorted(algorithms)}
