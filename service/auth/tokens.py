"""Bearer-token verification: claims, scopes and organisation (keys: service/signing_keys.py)."""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import httpx
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from service.auth.devkeys import PUBLIC_KEY_NAME, ensure_dev_keypair
from service.auth.scopes import ALL_SCOPES
from service.auth.signing_keys import (  # noqa: F401  (JWKS_* re-exported for callers and tests)
    JWKS_MIN_FETCH_INTERVAL_SECONDS,
    JWKS_STALE_GRACE_SECONDS,
    VERIFIABLE_ALGORITHMS,
    JwksKeys,
    KeysByAlg,
    KeysUnavailable,
    keys_from_pem,
)
from service.core.context import Caller
from service.core.settings import ConfigurationError, Settings
from service.core.strict_json import DuplicateKeys, loads_unique

logger = logging.getLogger(__name__)

VERIFIED_TOKEN_SECONDS = 60.0
VERIFIED_TOKENS_KEPT = 4096

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_ORG_CODE = re.compile(r"[A-Z0-9]{3,10}")
_MAX_SUB_LENGTH = 255

# Signature first, then the registered claims; sub must be a string (jose checks that).
_JOSE_OPTIONS = {
    "require_exp": True,
    "require_iat": True,
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
    ('missing required key "iat"', "missing iat claim"),
    ("missing required key", "missing required claim"),
    ("Invalid audience", "wrong audience"),
    ("Invalid issuer", "wrong issuer"),
    ("not yet valid", "token not yet valid"),
)


class InvalidToken(Exception):
    """The bearer token is missing or unacceptable; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # Fixed text only: never a claim value or part of the token.
        self.reason = reason


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
        self._max_lifetime = settings.jwt_max_lifetime_seconds
        self._options = {**_JOSE_OPTIONS, "leeway": settings.jwt_leeway_seconds}
        self._clock = clock
        allowed = frozenset(settings.jwt_algorithms)
        unsupported = allowed - VERIFIABLE_ALGORITHMS
        if unsupported:
            raise ConfigurationError(
                f"REFERRAL_JWT_ALGORITHMS: {sorted(unsupported)} cannot be verified by "
                "python-jose; remove them"
            )

        self._static_keys: KeysByAlg | None = None
        self._jwks: JwksKeys | None = None
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
            self._jwks = JwksKeys(
                settings.jwt_jwks_url,
                allowed - {"HS256"},
                float(settings.jwks_cache_seconds),
                http_client,
                clock,
            )
        else:
            if settings.jwt_public_key_file is not None:
                path, setting = settings.jwt_public_key_file, "REFERRAL_JWT_PUBLIC_KEY_FILE"
            else:
                # Only reachable in development: Settings refuses production without a key.
                _, path = ensure_dev_keypair(settings.dev_key_dir)
                setting = f"development key {settings.dev_key_dir / PUBLIC_KEY_NAME}"
            self._static_keys = keys_from_pem(path, setting, allowed)

        self._allowed = (
            frozenset(self._static_keys) if self._static_keys is not None else allowed - {"HS256"}
        )
        # token -> (caller, expiry in wall time, re-verify at on the monotonic clock)
        self._verified: OrderedDict[str, tuple[Caller, float, float]] = OrderedDict()

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()

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
        _refuse_repeated_claims(token.split(".")[1])
        if alg not in self._allowed:
            raise InvalidToken("algorithm not allowed")
        if self._static_keys is not None:
            key = self._static_keys[alg]
        else:
            assert self._jwks is not None
            try:
                key = await self._jwks.key_for(alg, kid)
            except KeysUnavailable as exc:
                raise InvalidToken(exc.reason) from None
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
        if claims["iat"] > time.time() + self._leeway:
            raise InvalidToken("token issued in the future")
        if claims["exp"] - claims["iat"] > self._max_lifetime:
            raise InvalidToken("token lifetime too long")
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


# An issuer sends the same header on every token, so parsing it is cached (bounded;
# refusals raise and are not cached). Saves a few µs on the per-request path.
@lru_cache(maxsize=64)
def _header(segment: str) -> tuple[str | None, str | None]:
    """The (alg, kid) of a JWS header segment; each None when absent or not a string."""
    try:
        header = loads_unique(_b64decode(segment))
    except DuplicateKeys:
        raise InvalidToken("duplicate header parameter") from None
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    if "crit" in header:
        # RFC 7515: an extension we do not understand must not be ignored.
        raise InvalidToken("unsupported critical header")
    alg, kid = header.get("alg"), header.get("kid")
    return (alg if isinstance(alg, str) else None, kid if isinstance(kid, str) else None)


def _refuse_repeated_claims(segment: str) -> None:
    # jose reads the claims with json.loads, where the last of two equal names wins: an
    # issuer and we could then disagree on, say, `org`. Checked before the signature because
    # it is cheap; anything else wrong with the segment is left for jose to refuse.
    try:
        loads_unique(_b64decode(segment))
    except DuplicateKeys:
        raise InvalidToken("duplicate claim") from None
    except (ValueError, binascii.Error, RecursionError):
        pass


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _jose_reason(exc: JWTError) -> str:
    message = str(exc)
    for fragment, reason in _JOSE_REASONS:
        if fragment in message:
            return reason
    return "invalid claims" if isinstance(exc, JWTClaimsError) else "invalid token"


def _is_numeric_date(value: object) -> bool:
    # bool is an int subclass and a NaN or infinity is no date.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
