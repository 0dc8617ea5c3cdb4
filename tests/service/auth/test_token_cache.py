"""A verified token is remembered until it expires, and for a bounded time at most."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jose import jwt

from service.auth import tokens
from service.auth.tokens import VERIFIED_TOKEN_SECONDS, InvalidToken, TokenVerifier


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the signature checks the verifier makes."""
    calls: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", counting_decode)
    return calls


async def test_a_token_is_verified_once_then_remembered(
    token_settings, token_keys, token_claims, token_sign, decodes: list[str]
) -> None:
    verifier = TokenVerifier(token_settings())
    token = token_sign(token_claims(), token_keys.rsa_private_pem)
    first = await verifier.verify(token)
    second = await verifier.verify(token)
    assert first == second
    assert decodes == [token]


async def test_a_remembered_token_is_not_served_from_memory_past_its_expiry(
    token_settings,
    token_keys,
    token_claims,
    token_sign,
    decodes: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(token_settings(jwt_leeway_seconds=0))
    now = time.time()
    token = token_sign(token_claims(exp=int(now) + 5), token_keys.rsa_private_pem)
    await verifier.verify(token)
    monkeypatch.setattr(tokens.time, "time", lambda: now + 10)
    # Past exp the memory is bypassed: the token goes back to a full check (which, on the
    # real clock jose reads, refuses it once it has expired).
    await verifier.verify(token)
    assert decodes == [token, token]


async def test_a_remembered_token_is_verified_again_after_the_bound(
    token_settings, token_keys, token_claims, token_sign, decodes: list[str]
) -> None:
    moments = [1000.0]
    verifier = TokenVerifier(token_settings(), clock=lambda: moments[0])
    token = token_sign(token_claims(), token_keys.rsa_private_pem)
    await verifier.verify(token)
    moments[0] += VERIFIED_TOKEN_SECONDS - 1
    await verifier.verify(token)
    assert len(decodes) == 1
    moments[0] += 2
    await verifier.verify(token)
    assert len(decodes) == 2


async def test_a_refused_token_is_never_remembered(
    token_settings, token_keys, token_claims, token_sign, decodes: list[str]
) -> None:
    verifier = TokenVerifier(token_settings())
    forged = token_sign(token_claims(), token_keys.other_rsa_private_pem)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await verifier.verify(forged)
    assert len(decodes) == 2
