"""Token verification: the good path and every attack we know to try."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jose import jwt
from pydantic import ValidationError

from service.auth import devkeys
from service.auth.devkeys import ensure_dev_keypair, mint_token
from service.auth.scopes import ALL_SCOPES, SCOPE_AUDIT, SCOPE_READ, SCOPE_SUBMIT, SCOPE_TRIAGE
from service.auth.tokens import (
    JWKS_MIN_FETCH_INTERVAL_SECONDS,
    JWKS_STALE_GRACE_SECONDS,
    InvalidToken,
    TokenVerifier,
)
from service.core.context import Caller
from service.core.settings import ConfigurationError, Settings, load_settings
from tests.service.conftest import TOKEN_AUDIENCE, TOKEN_ISSUER, TokenKeys

SettingsFactory = Callable[..., Settings]
ClaimsFactory = Callable[..., dict[str, Any]]
Signer = Callable[..., str]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hand_made_hs256(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token built without jose, so no jose-side refusal can hide our own gap."""
    signing_input = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT'})}.{b64url_json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def with_header(token: str, **header: Any) -> str:
    """The same payload and signature under a different header."""
    _, payload, signature = token.split(".")
    return f"{b64url_json(header)}.{payload}.{signature}"


async def refused(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value


# --- the good path ------------------------------------------------------------------------


async def test_good_rs256_token_gives_the_caller(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings())
    token = token_sign(token_claims(), token_keys.rsa_private_pem)

    caller = await verifier.verify(token)

    assert caller == Caller(
        sub="client-42", org="RX1", scopes=frozenset({SCOPE_SUBMIT, SCOPE_READ})
    )
    assert caller.has(SCOPE_SUBMIT) and caller.has(SCOPE_READ)
    assert not caller.has(SCOPE_TRIAGE) and not caller.has(SCOPE_AUDIT)


async def test_good_es256_token_gives_the_caller(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings(jwt_public_key_file=token_keys.ec_public_file))
    token = token_sign(token_claims(org="A81001"), token_keys.ec_private_pem, alg="ES256")

    caller = await verifier.verify(token)

    assert caller.org == "A81001" and caller.sub == "client-42"


async def test_mint_token_makes_a_token_the_verifier_accepts(
    token_settings: SettingsFactory, token_keys: TokenKeys
) -> None:
    verifier = TokenVerifier(token_settings())
    token = mint_token(
        private_key_pem=token_keys.rsa_private_pem,
        issuer=TOKEN_ISSUER,
        audience=TOKEN_AUDIENCE,
        sub="dev-user",
        org="RX1",
        scopes=sorted(ALL_SCOPES),
    )

    caller = await verifier.verify(token)

    assert caller == Caller(sub="dev-user", org="RX1", scopes=ALL_SCOPES)
    assert jwt.get_unverified_header(token)["kid"] == "dev"


async def test_certificate_pem_is_accepted_as_the_public_key(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    tmp_path: Path,
) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(token_keys.rsa.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(token_keys.rsa, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    verifier = TokenVerifier(token_settings(jwt_public_key_file=cert_file))

    caller = await verifier.verify(token_sign(token_claims(), token_keys.rsa_private_pem))

    assert caller.org == "RX1"


# --- scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("referrals:triage audit:read", {SCOPE_TRIAGE, SCOPE_AUDIT}),
        ("referrals:read  openid profile", {SCOPE_READ}),  # unknown ignored, double space ok
        ("", set()),
        (None, set()),  # no scope claim: a valid caller who may only reach open endpoints
        ("referrals:read\treferrals:submit", set()),  # only a space separates scopes
        ("REFERRALS:READ", set()),  # scopes are case-sensitive
    ],
)
async def test_scopes_come_from_the_space_separated_scope_claim(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    scope: str | None,
    expected: set[str],
) -> None:
    verifier = TokenVerifier(token_settings())
    token = token_sign(token_claims(scope=scope), token_keys.rsa_private_pem)

    assert (await verifier.verify(token)).scopes == expected


async def test_scp_claim_is_not_a_source_of_scopes(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings())
    claims = token_claims(scope=None, scp=[SCOPE_TRIAGE])

    caller = await verifier.verify(token_sign(claims, token_keys.rsa_private_pem))

    assert caller.scopes == frozenset()


@pytest.mark.parametrize("scope", [["referrals:read"], 7, {"a": 1}, True])
async def test_scope_that_is_not_a_string_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    scope: object,
) -> None:
    verifier = TokenVerifier(token_settings())
    token = token_sign(token_claims(scope=scope), token_keys.rsa_private_pem)

    assert (await refused(verifier, token)).reason == "invalid scope claim"


# --- malformed and missing tokens ---------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d.e",  # a JWE shape
        "....",
        "eyJhbGciOiJSUzI1NiJ9..",
        "Bearer eyJ.eyJ.sig",
        "éé.éé.éé",
        f"{b64url(b'not json')}.{b64url(b'{}')}.{b64url(b'sig')}",
        f"{b64url_json(['RS256'])}.{b64url(b'{}')}.{b64url(b'sig')}",
        f"{b64url(b'[' * 5000)}.{b64url(b'{}')}.{b64url(b'sig')}",  # deep nesting
    ],
)
async def test_missing_or_garbage_token_is_refused(
    token_settings: SettingsFactory, token: str
) -> None:
    await refused(TokenVerifier(token_settings()), token)


async def test_token_that_is_not_a_string_is_refused(token_settings: SettingsFactory) -> None:
    verifier = TokenVerifier(token_settings())
    with pytest.raises(InvalidToken):
        await verifier.verify(None)  # type: ignore[arg-type]


async def test_oversized_token_is_refused_before_it_is_parsed(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings(jwt_max_token_bytes=4096))
    # Correctly signed: only the size is wrong.
    token = token_sign(token_claims(pad="x" * 4096), token_keys.rsa_private_pem)

    assert (await refused(verifier, token)).reason == "token too large"
    # Something that would fail to parse says "too large" too: size is checked first.
    assert (await refused(verifier, "!" * 5000)).reason == "token too large"


def test_fuzzed_tokens_only_ever_raise_invalid_token(
    token_settings: SettingsFactory, token_keys: TokenKeys
) -> None:
    verifier = TokenVerifier(token_settings())
    segment = st.text(alphabet="ABCDEFabcdef0123456789-_=.", max_size=60)

    @given(
        st.one_of(
            st.text(max_size=200), st.builds(lambda *p: ".".join(p), segment, segment, segment)
        )
    )
    @hypothesis_settings(max_examples=300, deadline=None)
    def check(token: str) -> None:
        with pytest.raises(InvalidToken):
            asyncio.run(verifier.verify(token))

    check()


# --- algorithm attacks --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
@pytest.mark.parametrize("signature", ["", "c2ln"])
async def test_alg_none_is_refused(
    token_settings: SettingsFactory, token_claims: ClaimsFactory, alg: str, signature: str
) -> None:
    token = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(token_claims())}.{signature}"

    await refused(TokenVerifier(token_settings()), token)


@pytest.mark.parametrize("header", [{}, {"alg": ["RS256"]}, {"alg": None}, {"alg": 256}])
async def test_missing_or_non_string_alg_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    header: dict[str, Any],
) -> None:
    token = with_header(token_sign(token_claims(), token_keys.rsa_private_pem), **header)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "algorithm not allowed"


def _public_key_encodings(key: rsa.RSAPrivateKey) -> dict[str, bytes]:
    public = key.public_key()
    enc, fmt = serialization.Encoding, serialization.PublicFormat
    return {
        "pem-spki": public.public_bytes(enc.PEM, fmt.SubjectPublicKeyInfo),
        "pem-pkcs1": public.public_bytes(enc.PEM, fmt.PKCS1),
        "der-spki": public.public_bytes(enc.DER, fmt.SubjectPublicKeyInfo),
        "der-pkcs1": public.public_bytes(enc.DER, fmt.PKCS1),
        "pem-file-bytes": b"",  # filled in by the test: the exact bytes of the configured file
    }


@pytest.mark.parametrize(
    "encoding", ["pem-spki", "pem-pkcs1", "der-spki", "der-pkcs1", "pem-file-bytes"]
)
async def test_hs256_signed_with_the_public_key_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    encoding: str,
) -> None:
    secrets = _public_key_encodings(token_keys.rsa)
    secrets["pem-file-bytes"] = token_keys.rsa_public_file.read_bytes()
    token = hand_made_hs256(token_claims(), secrets[encoding])

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "algorithm not allowed"


def test_der_forgery_really_fools_unpinned_jose(
    token_keys: TokenKeys, token_claims: ClaimsFactory
) -> None:
    """Keeps the test above honest: the hand-made DER token is a working attack on jose 3.5
    when algorithms are not pinned (GHSA-6c5p-j8vq-pqhj's incomplete fix, jose issue #414).
    If this starts failing, jose has closed the hole, and this test can go."""
    der = _public_key_encodings(token_keys.rsa)["der-spki"]
    token = hand_made_hs256(token_claims(), der)

    assert jwt.decode(token, der, audience=TOKEN_AUDIENCE)["org"] == "RX1"


async def test_es256_header_with_an_rsa_key_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    # ES256 is on the allow-list, but the configured key is RSA: ES256 is not for this key.
    verifier = TokenVerifier(token_settings(jwt_algorithms=("RS256", "ES256")))
    token = token_sign(token_claims(), token_keys.ec_private_pem, alg="ES256")

    assert (await refused(verifier, token)).reason == "algorithm not allowed"


async def test_rs256_header_with_an_ec_key_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings(jwt_public_key_file=token_keys.ec_public_file))
    token = token_sign(token_claims(), token_keys.rsa_private_pem)

    assert (await refused(verifier, token)).reason == "algorithm not allowed"


async def test_swapping_the_hash_in_the_header_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    # RS512 is allowed too, but the signature was made with SHA-256: each alg has its own key
    # object, so the header cannot make us check with the wrong hash.
    verifier = TokenVerifier(token_settings(jwt_algorithms=("RS256", "RS512")))
    token = with_header(token_sign(token_claims(), token_keys.rsa_private_pem), alg="RS512")

    assert (await refused(verifier, token)).reason == "invalid signature"


async def test_algorithm_outside_the_allow_list_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings(jwt_algorithms=("RS256",)))
    token = token_sign(token_claims(), token_keys.rsa_private_pem, alg="RS384")

    assert (await refused(verifier, token)).reason == "algorithm not allowed"


async def test_critical_header_extension_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    token = token_sign(
        token_claims(), token_keys.rsa_private_pem, headers={"crit": ["b64"], "b64": False}
    )

    reason = (await refused(TokenVerifier(token_settings()), token)).reason
    assert reason == "unsupported critical header"


# --- signature attacks --------------------------------------------------------------------


async def test_token_signed_by_another_key_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    token = token_sign(token_claims(), token_keys.other_rsa_private_pem)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "invalid signature"


async def test_es256_token_signed_by_another_key_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings(jwt_public_key_file=token_keys.ec_public_file))
    token = token_sign(token_claims(), token_keys.other_ec_private_pem, alg="ES256")

    assert (await refused(verifier, token)).reason == "invalid signature"


async def test_tampered_payload_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    header, _, signature = token_sign(token_claims(), token_keys.rsa_private_pem).split(".")
    forged = f"{header}.{b64url_json(token_claims(org='ZZZ99', scope=SCOPE_TRIAGE))}.{signature}"

    assert (await refused(TokenVerifier(token_settings()), forged)).reason == "invalid signature"


async def test_stripped_signature_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    token = token_sign(token_claims(), token_keys.rsa_private_pem)

    await refused(TokenVerifier(token_settings()), token.rsplit(".", 1)[0] + ".")


# --- time claims --------------------------------------------------------------------------


async def test_expired_token_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    now = int(time.time())
    claims = token_claims(iat=now - 3600, nbf=now - 3600, exp=now - 60)  # leeway is 30 s
    token = token_sign(claims, token_keys.rsa_private_pem)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "token expired"


async def test_just_expired_token_is_accepted_within_the_leeway(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    now = int(time.time())
    token = token_sign(
        token_claims(iat=now - 600, nbf=now - 600, exp=now - 10), token_keys.rsa_private_pem
    )

    assert (await TokenVerifier(token_settings()).verify(token)).sub == "client-42"
    await refused(TokenVerifier(token_settings(jwt_leeway_seconds=0)), token)


async def test_token_not_yet_valid_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    now = int(time.time())
    token = token_sign(token_claims(nbf=now + 3600, exp=now + 7200), token_keys.rsa_private_pem)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "token not yet valid"


async def test_nbf_slightly_ahead_is_accepted_within_the_leeway(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    token = token_sign(token_claims(nbf=int(time.time()) + 10), token_keys.rsa_private_pem)

    assert (await TokenVerifier(token_settings()).verify(token)).org == "RX1"


async def test_token_issued_in_the_future_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    now = int(time.time())
    token = token_sign(
        token_claims(iat=now + 3600, nbf=None, exp=now + 7200), token_keys.rsa_private_pem
    )

    reason = (await refused(TokenVerifier(token_settings()), token)).reason
    assert reason == "token issued in the future"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["9999999999", [1], float("inf"), float("nan"), True, {"t": 1}])
async def test_time_claim_that_is_not_a_number_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    claim: str,
    value: object,
) -> None:
    token = token_sign(token_claims(**{claim: value}), token_keys.rsa_private_pem)

    await refused(TokenVerifier(token_settings()), token)


# --- token lifetime -----------------------------------------------------------------------


async def test_token_without_iat_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    token = token_sign(token_claims(iat=None), token_keys.rsa_private_pem)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "missing iat claim"


@pytest.mark.parametrize(
    "lifetime",
    [
        pytest.param(86400 + 1, id="a-second-over-a-day"),
        pytest.param(253402300799 - int(time.time()), id="until-the-year-9999"),
    ],
)
async def test_token_living_longer_than_the_maximum_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    lifetime: int,
) -> None:
    now = int(time.time())
    token = token_sign(token_claims(iat=now, exp=now + lifetime), token_keys.rsa_private_pem)

    reason = (await refused(TokenVerifier(token_settings()), token)).reason
    assert reason == "token lifetime too long"


async def test_lifetime_counts_from_iat_not_from_now(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    # Issued an hour ago for 24 h and 1 s: still unexpired, but never acceptable.
    now = int(time.time())
    claims = token_claims(iat=now - 3600, nbf=now - 3600, exp=now - 3600 + 86401)
    token = token_sign(claims, token_keys.rsa_private_pem)

    reason = (await refused(TokenVerifier(token_settings()), token)).reason
    assert reason == "token lifetime too long"


async def test_token_living_exactly_the_maximum_is_accepted(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    now = int(time.time())
    day = token_sign(token_claims(iat=now, exp=now + 86400), token_keys.rsa_private_pem)
    short = token_sign(token_claims(iat=now, exp=now + 601), token_keys.rsa_private_pem)

    assert (await TokenVerifier(token_settings()).verify(day)).org == "RX1"
    ten_minutes = TokenVerifier(token_settings(jwt_max_lifetime_seconds=600))
    assert (await refused(ten_minutes, short)).reason == "token lifetime too long"


def test_the_maximum_lifetime_defaults_to_a_day_and_must_be_positive(
    token_settings: SettingsFactory,
) -> None:
    assert Settings.model_fields["jwt_max_lifetime_seconds"].default == 86400
    for bad in (0, -1):
        with pytest.raises(ValidationError, match="jwt_max_lifetime_seconds"):
            token_settings(jwt_max_lifetime_seconds=bad)


async def test_a_dev_token_for_a_day_as_make_run_mints_it_is_accepted(
    token_settings: SettingsFactory, token_keys: TokenKeys
) -> None:
    def dev_token(ttl: int) -> str:
        return mint_token(
            private_key_pem=token_keys.rsa_private_pem,
            issuer=TOKEN_ISSUER,
            audience=TOKEN_AUDIENCE,
            sub="dev-user",
            org="RX1",
            scopes=[SCOPE_SUBMIT],
            ttl_seconds=ttl,
        )

    verifier = TokenVerifier(token_settings())
    assert (await verifier.verify(dev_token(86400))).sub == "dev-user"  # make run: --ttl 86400
    assert (await refused(verifier, dev_token(86401))).reason == "token lifetime too long"


# --- repeated names in the header or the claims -------------------------------------------


RS256_HEADER = '{"alg": "RS256", "typ": "JWT"}'


def signed_raw(header_json: str, claims_json: str, key: rsa.RSAPrivateKey) -> str:
    """An RS256 token over exactly these JSON texts (jose would re-serialise a dict and so
    could never repeat a name)."""
    signing_input = f"{b64url(header_json.encode())}.{b64url(claims_json.encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def claims_text(claims: dict[str, Any], *, repeat: tuple[str, object] | None = None) -> str:
    text = json.dumps(claims)
    if repeat is None:
        return text
    name, first = repeat
    # The first value is the one json.loads would drop; the claim set's own value comes last.
    return "{" + f"{json.dumps(name)}: {json.dumps(first)}, " + text[1:]


async def test_raw_signed_token_without_repeats_is_accepted(
    token_settings: SettingsFactory, token_keys: TokenKeys, token_claims: ClaimsFactory
) -> None:
    # The control for the tests below: the hand-made token itself is good.
    token = signed_raw(
        '{"alg": "RS256", "typ": "JWT"}', claims_text(token_claims()), token_keys.rsa
    )

    assert (await TokenVerifier(token_settings()).verify(token)).org == "RX1"


@pytest.mark.parametrize(
    ("name", "first"),
    [
        pytest.param("org", "A81001", id="org"),
        pytest.param("scope", "audit:read referrals:triage", id="scope"),
        pytest.param("exp", 1, id="exp"),
        pytest.param("sub", "client-42", id="same-value-twice"),
    ],
)
async def test_token_repeating_a_claim_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    name: str,
    first: object,
) -> None:
    claims = claims_text(token_claims(), repeat=(name, first))
    token = signed_raw(RS256_HEADER, claims, token_keys.rsa)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "duplicate claim"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param('{"alg": "RS256", "alg": "RS256"}', id="alg"),
        pytest.param('{"alg": "RS256", "kid": "a", "kid": "b"}', id="kid"),
        pytest.param('{"alg": "RS256", "typ": "JWT", "typ": "JWT"}', id="typ"),
    ],
)
async def test_token_repeating_a_header_parameter_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    header: str,
) -> None:
    token = signed_raw(header, claims_text(token_claims()), token_keys.rsa)

    reason = (await refused(TokenVerifier(token_settings()), token)).reason
    assert reason == "duplicate header parameter"


async def test_a_repeated_claim_nested_in_another_is_refused(
    token_settings: SettingsFactory, token_keys: TokenKeys, token_claims: ClaimsFactory
) -> None:
    claims = claims_text(token_claims())[:-1] + ', "ctx": {"org": "A81001", "org": "RX1"}}'
    token = signed_raw('{"alg": "RS256"}', claims, token_keys.rsa)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "duplicate claim"


# --- required claims, issuer, audience ----------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub", "org"])
async def test_token_missing_a_required_claim_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    claim: str,
) -> None:
    token = token_sign(token_claims(**{claim: None}), token_keys.rsa_private_pem)

    assert (
        await refused(TokenVerifier(token_settings()), token)
    ).reason == "missing required claim"


@pytest.mark.parametrize(
    "issuer", ["https://evil.test", "https://idp.test/", "", ["https://idp.test"]]
)
async def test_wrong_issuer_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    issuer: object,
) -> None:
    token = token_sign(token_claims(iss=issuer), token_keys.rsa_private_pem)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "wrong issuer"


@pytest.mark.parametrize("audience", ["another-api", "", ["another-api"], []])
async def test_wrong_audience_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    audience: object,
) -> None:
    token = token_sign(token_claims(aud=audience), token_keys.rsa_private_pem)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "wrong audience"


@pytest.mark.parametrize("audience", [7, [TOKEN_AUDIENCE, 7], {"aud": TOKEN_AUDIENCE}])
async def test_malformed_audience_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    audience: object,
) -> None:
    token = token_sign(token_claims(aud=audience), token_keys.rsa_private_pem)

    await refused(TokenVerifier(token_settings()), token)


async def test_audience_list_naming_us_is_accepted(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    token = token_sign(token_claims(aud=["other-api", TOKEN_AUDIENCE]), token_keys.rsa_private_pem)

    assert (await TokenVerifier(token_settings()).verify(token)).org == "RX1"


# --- sub and org --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sub", ["", "   ", "\t", "a\nb", "a\x00b", "x" * 256, 42, ["client"], True]
)
async def test_blank_or_unsafe_sub_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    sub: object,
) -> None:
    token = token_sign(token_claims(sub=sub), token_keys.rsa_private_pem)

    await refused(TokenVerifier(token_settings()), token)


@pytest.mark.parametrize(
    "org",
    [
        "",
        "   ",
        "rx1",
        "RX",
        "ABCDEFGHIJK",
        "RX1\n",
        " RX1",
        "RX-1",
        "RX1 ",
        "ＲＸ１",
        "RX١",
        42,
        ["RX1"],
        True,
        {"code": "RX1"},
    ],
)
async def test_org_that_is_not_an_ods_style_code_is_refused(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    org: object,
) -> None:
    token = token_sign(token_claims(org=org), token_keys.rsa_private_pem)

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "invalid org claim"


@pytest.mark.parametrize("org", ["RX1", "A81001", "ABCDEFGHIJ", "123"])
async def test_ods_style_org_codes_are_accepted(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    org: str,
) -> None:
    token = token_sign(token_claims(org=org), token_keys.rsa_private_pem)

    assert (await TokenVerifier(token_settings()).verify(token)).org == org


async def test_reason_never_echoes_claim_values_or_the_token(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    verifier = TokenVerifier(token_settings())
    for claims in (
        token_claims(org="jane.doe@example.org"),
        token_claims(sub="Jane Doe\n"),
        token_claims(iss="Jane Doe"),
        token_claims(aud="Jane Doe"),
    ):
        token = token_sign(claims, token_keys.rsa_private_pem)
        error = await refused(verifier, token)
        for text in (error.reason, str(error)):
            assert "Jane" not in text and "jane" not in text and token[:20] not in text


# --- development modes --------------------------------------------------------------------


async def test_hs256_secret_works_in_explicit_development_mode(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    secret = "s" * 40
    settings = token_settings(
        env="development",
        jwt_public_key_file=None,
        jwt_hs256_secret=secret,
        jwt_algorithms=("HS256",),
    )
    verifier = TokenVerifier(settings)

    assert (
        await verifier.verify(token_sign(token_claims(), secret.encode(), alg="HS256"))
    ).org == "RX1"
    # Asymmetric tokens are not accepted beside the secret, nor tokens with another secret.
    await refused(verifier, token_sign(token_claims(), token_keys.rsa_private_pem))
    await refused(verifier, token_sign(token_claims(), b"t" * 40, alg="HS256"))


async def test_development_without_a_key_trusts_only_the_local_dev_key(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # dev_key_dir is relative to the working directory
    settings = token_settings(env="development", jwt_public_key_file=None)
    verifier = TokenVerifier(settings)
    private_pem = (tmp_path / settings.dev_key_dir / "private.pem").read_bytes()

    good = token_sign(token_claims(), private_pem, headers={"kid": "dev"})
    assert (await verifier.verify(good)).sub == "client-42"
    await refused(verifier, token_sign(token_claims(), token_keys.rsa_private_pem))


# --- settings refuse unsafe key configurations --------------------------------------------


def test_settings_refuse_hs256_outside_development(token_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="REFERRAL_ENV=development"):
        token_settings(
            jwt_public_key_file=None, jwt_hs256_secret="s" * 40, jwt_algorithms=("HS256",)
        )


def test_settings_refuse_hs256_alongside_a_public_key_file(
    token_settings: SettingsFactory,
) -> None:
    with pytest.raises(ValidationError, match="never be combined with an asymmetric key"):
        token_settings(env="development", jwt_hs256_secret="s" * 40, jwt_algorithms=("HS256",))


def test_settings_refuse_hs256_alongside_a_jwks_url(token_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="never be combined with an asymmetric key"):
        token_settings(
            env="development",
            jwt_public_key_file=None,
            jwt_jwks_url="https://idp.test/jwks",
            jwt_hs256_secret="s" * 40,
            jwt_algorithms=("HS256",),
        )


def test_settings_refuse_hs256_in_the_allow_list_beside_an_asymmetric_algorithm(
    token_settings: SettingsFactory,
) -> None:
    with pytest.raises(ValidationError, match="never be combined"):
        token_settings(
            env="development",
            jwt_public_key_file=None,
            jwt_hs256_secret="s" * 40,
            jwt_algorithms=("HS256", "RS256"),
        )


@pytest.mark.parametrize("algorithms", [("none",), ("RS256", "none"), ()])
def test_settings_refuse_alg_none_or_an_empty_allow_list(
    token_settings: SettingsFactory, algorithms: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError, match="REFERRAL_JWT_ALGORITHMS"):
        token_settings(jwt_algorithms=algorithms)


def test_settings_refuse_production_without_a_key(token_settings: SettingsFactory) -> None:
    with pytest.raises(
        ValidationError, match="REFERRAL_JWT_PUBLIC_KEY_FILE or REFERRAL_JWT_JWKS_URL"
    ):
        token_settings(jwt_public_key_file=None)


# --- start-up refuses keys it cannot use safely -------------------------------------------


def _pem_file(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def test_an_algorithm_jose_cannot_verify_is_refused_at_start_up() -> None:
    # python-jose has no RSA-PSS: settings refuse PS256 before a verifier is ever built.
    with pytest.raises(ConfigurationError, match="REFERRAL_JWT_ALGORITHMS"):
        load_settings(env="development", jwt_algorithms="RS256,PS256")


def test_verifier_refuses_a_key_that_fits_no_allowed_algorithm(
    token_settings: SettingsFactory, tmp_path: Path
) -> None:
    p384 = _pem_file(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ConfigurationError, match="REFERRAL_JWT_ALGORITHMS"):
        TokenVerifier(token_settings(jwt_public_key_file=p384))


def test_verifier_refuses_a_short_rsa_key(token_settings: SettingsFactory, tmp_path: Path) -> None:
    short = _pem_file(tmp_path / "rsa1024.pem", rsa.generate_private_key(65537, 1024))
    with pytest.raises(ConfigurationError, match="REFERRAL_JWT_PUBLIC_KEY_FILE"):
        TokenVerifier(token_settings(jwt_public_key_file=short))


def test_verifier_refuses_a_private_key_file(
    token_settings: SettingsFactory, token_keys: TokenKeys, tmp_path: Path
) -> None:
    private_file = tmp_path / "private.pem"
    private_file.write_bytes(token_keys.rsa_private_pem)
    with pytest.raises(ConfigurationError, match="public key, not a private key"):
        TokenVerifier(token_settings(jwt_public_key_file=private_file))


@pytest.mark.parametrize(
    "content", [None, b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n"]
)
def test_verifier_refuses_a_missing_or_unreadable_key_file(
    token_settings: SettingsFactory, tmp_path: Path, content: bytes | None
) -> None:
    key_file = tmp_path / "public.pem"
    if content is not None:
        key_file.write_bytes(content)
    with pytest.raises(ConfigurationError, match="REFERRAL_JWT_PUBLIC_KEY_FILE"):
        TokenVerifier(token_settings(jwt_public_key_file=key_file))


def test_verifier_refuses_a_plain_http_jwks_url_in_production(
    token_settings: SettingsFactory,
) -> None:
    with pytest.raises(ConfigurationError, match="REFERRAL_JWT_JWKS_URL"):
        TokenVerifier(token_settings(jwt_public_key_file=None, jwt_jwks_url="http://idp.test/jwks"))


# --- JWKS ---------------------------------------------------------------------------------

JWKS_URL = "https://idp.test/.well-known/jwks.json"


def _b64_uint(value: int, length: int | None = None) -> str:
    length = length or (value.bit_length() + 7) // 8
    return b64url(value.to_bytes(length, "big"))


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e), **extra}


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "kid": kid,
        "crv": "P-256",
        "x": _b64_uint(numbers.x, 32),
        "y": _b64_uint(numbers.y, 32),
        **extra,
    }


class FakeIdP:
    """Serves a JWKS through httpx.MockTransport, counts fetches, and can be made to fail."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        self.failure: Callable[[], httpx.Response] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL
        self.fetches += 1
        if self.failure is not None:
            return self.failure()
        return httpx.Response(200, json={"keys": self.keys})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _connect_error() -> httpx.Response:
    raise httpx.ConnectError("connection refused")


@pytest.fixture
def jwks_settings(token_settings: SettingsFactory) -> Settings:
    return token_settings(jwt_public_key_file=None, jwt_jwks_url=JWKS_URL, jwks_cache_seconds=60)


async def test_jwks_key_is_chosen_by_kid(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    idp = FakeIdP([ec_jwk(token_keys.ec, "ec-1"), rsa_jwk(token_keys.rsa, "rsa-1", use="sig")])
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client)
        rs = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "rsa-1"})
        es = token_sign(
            token_claims(), token_keys.ec_private_pem, alg="ES256", headers={"kid": "ec-1"}
        )

        assert (await verifier.verify(rs)).org == "RX1"
        assert (await verifier.verify(es)).org == "RX1"
        # A kid naming the other key is a bad signature, not a way round it.
        swapped = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "ec-1"})
        await refused(verifier, swapped)
        await verifier.aclose()
        assert not client.is_closed  # a client passed in belongs to the caller
    assert idp.fetches == 1  # cached


async def test_jwks_unknown_kid_is_refused_and_refetches_are_rate_limited(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    idp = FakeIdP([rsa_jwk(token_keys.rsa, "rsa-1")])
    clock = FakeClock()
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client, clock=clock)
        stranger = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "nope"})

        assert (await refused(verifier, stranger)).reason == "unknown signing key"
        for _ in range(50):
            await refused(verifier, stranger)
        assert idp.fetches == 1  # the first fetch was moments ago: no refetch yet

        clock.now += JWKS_MIN_FETCH_INTERVAL_SECONDS
        await asyncio.gather(*(refused(verifier, stranger) for _ in range(20)))
        assert idp.fetches == 2  # one refetch for the lot


async def test_jwks_key_rotation_is_picked_up_on_an_unknown_kid(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    idp = FakeIdP([rsa_jwk(token_keys.rsa, "rsa-1")])
    clock = FakeClock()
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client, clock=clock)
        await verifier.verify(
            token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "rsa-1"})
        )

        idp.keys.append(ec_jwk(token_keys.ec, "ec-2"))
        clock.now += JWKS_MIN_FETCH_INTERVAL_SECONDS
        rotated = token_sign(
            token_claims(), token_keys.ec_private_pem, alg="ES256", headers={"kid": "ec-2"}
        )

        assert (await verifier.verify(rotated)).org == "RX1"
        assert idp.fetches == 2


async def test_jwks_token_without_kid_is_refused(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    idp = FakeIdP([rsa_jwk(token_keys.rsa, "rsa-1")])
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client)
        for headers in (None, {"kid": ""}, {"kid": ["rsa-1"]}):
            token = token_sign(token_claims(), token_keys.rsa_private_pem, headers=headers)
            assert (await refused(verifier, token)).reason == "token has no key id"
    assert idp.fetches == 0  # refused before any network call


async def test_jwks_es256_header_against_an_rsa_kid_is_refused(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    idp = FakeIdP([rsa_jwk(token_keys.rsa, "rsa-1")])
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client)
        token = token_sign(
            token_claims(), token_keys.ec_private_pem, alg="ES256", headers={"kid": "rsa-1"}
        )

        assert (await refused(verifier, token)).reason == "algorithm not allowed for this key"


@pytest.mark.parametrize(
    "entry_for",
    [
        lambda keys: {**rsa_jwk(keys.rsa, "k"), "use": "enc"},
        lambda keys: {**rsa_jwk(keys.rsa, "k"), "alg": "RS512"},  # not on the allow-list
        lambda keys: {**rsa_jwk(keys.rsa, "k"), "alg": "HS256"},
        lambda keys: {**rsa_jwk(keys.rsa, "k"), "alg": ["RS256"]},
        lambda keys: {**rsa_jwk(keys.rsa, "k"), "kty": "oct"},
        lambda keys: {"kty": "oct", "kid": "k", "k": b64url(keys.rsa_public_file.read_bytes())},
        lambda keys: {**rsa_jwk(keys.rsa, "k"), "n": 12345},
        lambda keys: {**ec_jwk(keys.ec, "k"), "crv": "P-384"},
        lambda keys: {**ec_jwk(keys.ec, "k"), "crv": ["P-256"]},
        lambda keys: {**ec_jwk(keys.ec, "k"), "y": ec_jwk(keys.ec, "k")["x"]},  # off the curve
        lambda keys: "not a key",
    ],
)
async def test_jwks_entries_unfit_for_the_allow_list_are_ignored(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    entry_for: Callable[[TokenKeys], Any],
) -> None:
    settings = token_settings(
        jwt_public_key_file=None, jwt_jwks_url=JWKS_URL, jwt_algorithms=("RS256", "ES256")
    )
    idp = FakeIdP([entry_for(token_keys), rsa_jwk(token_keys.rsa, "good")])
    async with idp.client() as client:
        verifier = TokenVerifier(settings, http_client=client)
        token = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "k"})
        hs256 = with_header(
            hand_made_hs256(token_claims(), token_keys.rsa_public_file.read_bytes()),
            alg="HS256",
            kid="k",
        )

        assert (await refused(verifier, token)).reason == "unknown signing key"
        await refused(verifier, hs256)
        # The rest of the document still works.
        good = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "good"})
        assert (await verifier.verify(good)).org == "RX1"


async def test_jwks_duplicate_kid_is_not_trusted(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    other = serialization.load_pem_private_key(token_keys.other_rsa_private_pem, password=None)
    assert isinstance(other, rsa.RSAPrivateKey)
    idp = FakeIdP(
        [rsa_jwk(other, "dup"), rsa_jwk(token_keys.rsa, "dup"), rsa_jwk(token_keys.rsa, "ok")]
    )
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client)
        token = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "dup"})

        assert (await refused(verifier, token)).reason == "unknown signing key"


@pytest.mark.parametrize(
    "failure",
    [
        _connect_error,
        lambda: httpx.Response(500),
        lambda: httpx.Response(302, headers={"Location": "https://evil.test/jwks"}),
        lambda: httpx.Response(200, content=b"<html>"),
        lambda: httpx.Response(200, json={"keys": "nope"}),
        lambda: httpx.Response(200, json=["not", "an", "object"]),
        lambda: httpx.Response(200, json={"keys": []}),
        lambda: httpx.Response(200, content=b'{"keys": [' + b" " * 300_000 + b"]}"),
    ],
)
async def test_jwks_fetch_failure_refuses_the_token_without_crashing(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
    failure: Callable[[], httpx.Response],
) -> None:
    idp = FakeIdP([rsa_jwk(token_keys.rsa, "rsa-1")])
    idp.failure = failure
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client)
        token = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "rsa-1"})

        assert (await refused(verifier, token)).reason == "signing keys unavailable"


async def test_jwks_fetch_timeout_refuses_the_token(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        verifier = TokenVerifier(jwks_settings, http_client=client)
        token = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "rsa-1"})

        assert (await refused(verifier, token)).reason == "signing keys unavailable"


async def test_stale_jwks_is_used_within_a_bounded_grace_while_the_idp_is_down(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    idp = FakeIdP([rsa_jwk(token_keys.rsa, "rsa-1")])
    clock = FakeClock()
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client, clock=clock)
        token = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "rsa-1"})
        await verifier.verify(token)

        idp.failure = _connect_error
        clock.now += jwks_settings.jwks_cache_seconds + 1  # cache expired, IdP down
        assert (await verifier.verify(token)).org == "RX1"
        assert idp.fetches == 2  # it did try

        clock.now += JWKS_STALE_GRACE_SECONDS  # past TTL + grace
        assert (await refused(verifier, token)).reason == "signing keys unavailable"

        idp.failure = None  # IdP back: recovers on the next allowed fetch
        clock.now += JWKS_MIN_FETCH_INTERVAL_SECONDS
        assert (await verifier.verify(token)).org == "RX1"


async def test_jwks_failure_backs_off_instead_of_fetching_on_every_request(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    idp = FakeIdP([rsa_jwk(token_keys.rsa, "rsa-1")])
    idp.failure = _connect_error
    clock = FakeClock()
    async with idp.client() as client:
        verifier = TokenVerifier(jwks_settings, http_client=client, clock=clock)
        token = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "rsa-1"})
        for _ in range(30):
            await refused(verifier, token)

        assert idp.fetches == 1


async def test_verifier_closes_the_http_client_it_made(jwks_settings: Settings) -> None:
    verifier = TokenVerifier(jwks_settings)
    await verifier.aclose()
    assert verifier._jwks is not None and verifier._jwks._http.is_closed


# --- development key pair -----------------------------------------------------------------


def test_dev_keypair_is_made_once_and_private_key_is_owner_only(tmp_path: Path) -> None:
    private, public = ensure_dev_keypair(tmp_path / "keys")
    first = (private.read_bytes(), public.read_bytes())

    again = ensure_dev_keypair(tmp_path / "keys")

    assert again == (private, public)
    assert (private.read_bytes(), public.read_bytes()) == first
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in first[0] and b"BEGIN PUBLIC KEY" in first[1]
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["private.pem", "public.pem"]


def test_dev_keypair_tightens_a_readable_private_key_and_repairs_the_public_key(
    tmp_path: Path,
) -> None:
    private, public = ensure_dev_keypair(tmp_path)
    expected_public = public.read_bytes()
    private.chmod(0o644)
    public.write_bytes(b"stale")

    ensure_dev_keypair(tmp_path)

    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_bytes() == expected_public


def test_dev_keypair_racing_callers_agree_on_one_pair(tmp_path: Path) -> None:
    directory = tmp_path / "race"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: ensure_dev_keypair(directory), range(8)))

    private, public = results[0]
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    derived = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public.read_bytes() == derived
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_losing_publisher_keeps_the_winners_private_key(tmp_path: Path) -> None:
    target = tmp_path / "private.pem"
    devkeys._publish_exclusive(target, b"winner")
    devkeys._publish_exclusive(target, b"loser")

    assert target.read_bytes() == b"winner"
    assert os.listdir(tmp_path) == ["private.pem"]


def test_mint_token_refuses_a_naive_time_and_a_non_positive_ttl(token_keys: TokenKeys) -> None:
    common: dict[str, Any] = {
        "private_key_pem": token_keys.rsa_private_pem,
        "issuer": TOKEN_ISSUER,
        "audience": TOKEN_AUDIENCE,
        "sub": "s",
        "org": "RX1",
        "scopes": [],
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        mint_token(**common, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="ttl_seconds"):
        mint_token(**common, ttl_seconds=0)


def test_mint_token_claims(token_keys: TokenKeys) -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    token = mint_token(
        private_key_pem=token_keys.rsa_private_pem,
        issuer=TOKEN_ISSUER,
        audience=TOKEN_AUDIENCE,
        sub="s",
        org="RX1",
        scopes=[SCOPE_READ, SCOPE_SUBMIT, SCOPE_READ],
        ttl_seconds=60,
        kid="k1",
        now=now,
        extra_claims={"org": "A81001", "extra": True},
    )

    claims = jwt.get_unverified_claims(token)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert claims["scope"] == "referrals:read referrals:submit"
    assert claims["iat"] == claims["nbf"] == int(now.timestamp())
    assert claims["exp"] == int(now.timestamp()) + 60
    assert claims["org"] == "A81001" and claims["extra"] is True
    assert {"iss", "aud", "sub", "jti"} <= claims.keys()


async def test_stale_jwks_serves_other_requests_while_a_slow_refresh_is_in_flight(
    jwks_settings: Settings,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    release = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()  # the IdP hangs on the refresh
        return httpx.Response(200, json={"keys": [rsa_jwk(token_keys.rsa, "rsa-1")]})

    clock = FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        verifier = TokenVerifier(jwks_settings, http_client=client, clock=clock)
        token = token_sign(token_claims(), token_keys.rsa_private_pem, headers={"kid": "rsa-1"})
        await verifier.verify(token)
        clock.now += jwks_settings.jwks_cache_seconds + 1

        refreshing = asyncio.create_task(verifier.verify(token))
        while calls < 2:
            await asyncio.sleep(0)
        other = await asyncio.wait_for(verifier.verify(token), timeout=1)

        assert other.org == "RX1"
        release.set()
        assert (await refreshing).org == "RX1"


async def test_embedded_jwk_header_is_not_trusted(
    token_settings: SettingsFactory,
    token_keys: TokenKeys,
    token_claims: ClaimsFactory,
    token_sign: Signer,
) -> None:
    # The attacker signs with their own key and ships it in the header (CVE-2018-0114 style).
    other = serialization.load_pem_private_key(token_keys.other_rsa_private_pem, password=None)
    assert isinstance(other, rsa.RSAPrivateKey)
    token = token_sign(
        token_claims(),
        token_keys.other_rsa_private_pem,
        headers={"jwk": rsa_jwk(other, "x"), "jku": "https://evil.test/jwks", "kid": "x"},
    )

    assert (await refused(TokenVerifier(token_settings()), token)).reason == "invalid signature"
