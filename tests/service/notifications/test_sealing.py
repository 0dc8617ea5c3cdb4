"""Signing secrets at rest: sealed under REFERRAL_WEBHOOK_SECRET_KEYS, opened to sign, a plain
secret stored before still used, the key rotatable, and a secret no key opens never sent."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from service.core.settings import ConfigurationError, load_settings
from service.models import WEBHOOK_SUBSCRIPTIONS
from service.notifications import signing, subscriptions
from service.notifications.sealing import SecretBox, SecretUnavailable
from tests.service.notifications.conftest import TEAM, Hooks
from tests.webhooks import receiver

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


async def test_a_sealed_secret_is_stored_sealed_and_signs(hooks: Hooks) -> None:
    hooks.box = SecretBox([NEW_KEY])
    with receiver() as hook:
        made = await hooks.subscribe(hook.url)
        stored = (await hooks.subscription(made.subscription.id)).secret
        assert stored.startswith("sealed:") and made.secret not in stored
        assert made.secret.removeprefix("whsec_") not in stored
        await hooks.publish("r-1")
        assert await hooks.dispatcher().run_once() == 1
        [message] = hook.snapshot()
        assert message.verify(made.secret)["data"]["id"] == "r-1"


async def test_a_plain_secret_stored_before_still_signs(hooks: Hooks) -> None:
    with receiver() as hook:
        made = await hooks.subscribe(hook.url)  # no key: stored as it is
        assert (await hooks.subscription(made.subscription.id)).secret == made.secret
        hooks.box = SecretBox([NEW_KEY])
        await hooks.publish("r-1")
        assert await hooks.dispatcher().run_once() == 1
        assert hook.snapshot()[0].verify(made.secret)


async def test_the_key_rotates_old_secrets_open_and_new_ones_seal_with_the_new_key(
    hooks: Hooks,
) -> None:
    hooks.box = SecretBox([OLD_KEY])
    with receiver() as hook:
        made = await hooks.subscribe(hook.url)
        hooks.box = SecretBox([NEW_KEY, OLD_KEY])
        async with hooks.units.begin() as session:
            rotated = await subscriptions.rotate_secret(
                session=session,
                ctx=TEAM,
                subscription_id=made.subscription.id,
                box=hooks.box,
                now=hooks.clock(),
            )
        row = await hooks.subscription(made.subscription.id)
        assert SecretBox([NEW_KEY]).open(row.secret) == rotated.secret
        with pytest.raises(SecretUnavailable):
            SecretBox([NEW_KEY]).open(row.previous_secret)
        await hooks.publish("r-1")
        assert await hooks.dispatcher().run_once() == 1
        [message] = hook.snapshot()
        # Both signatures while the previous secret is valid: each opened with its own key.
        assert message.verify(made.secret) and message.verify(rotated.secret)


async def test_a_secret_no_key_opens_is_never_sent_and_is_retried(hooks: Hooks) -> None:
    hooks.box = SecretBox([OLD_KEY])
    with receiver() as hook:
        await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        hooks.box = SecretBox([NEW_KEY])  # the old key was dropped from the settings
        assert await hooks.dispatcher().run_once() == 1
        assert hook.snapshot() == []
        [row] = await hooks.deliveries()
        assert (row.status, row.last_error, row.attempts) == ("pending", "secret_unavailable", 1)
        hooks.box = SecretBox([NEW_KEY, OLD_KEY])  # put back
        hooks.clock.advance(3600)
        assert await hooks.dispatcher().run_once() == 1
        assert len(hook.snapshot()) == 1


async def test_a_sealed_secret_without_any_key_is_refused_too(hooks: Hooks) -> None:
    hooks.box = SecretBox([OLD_KEY])
    with receiver() as hook:
        made = await hooks.subscribe(hook.url)
        hooks.box = SecretBox(())
        await hooks.publish("r-1")
        await hooks.dispatcher().run_once()
        assert hook.snapshot() == []
        stored = (await hooks.subscription(made.subscription.id)).secret
        with pytest.raises(SecretUnavailable, match="not set"):
            SecretBox(()).open(stored)


async def test_a_long_sealed_value_fits_both_secret_columns(hooks: Hooks) -> None:
    # 0009 widened the columns (PostgreSQL enforces varchar lengths; 64 was a plain secret's).
    hooks.box = SecretBox([NEW_KEY])
    with receiver() as hook:
        made = await hooks.subscribe(hook.url)
    longest = "sealed:" + "x" * 248
    async with hooks.units.begin() as session:
        await session.execute(
            update(WEBHOOK_SUBSCRIPTIONS)
            .where(WEBHOOK_SUBSCRIPTIONS.c.id == made.subscription.id)
            .values(secret=longest, previous_secret=longest)
        )
    assert (await hooks.subscription(made.subscription.id)).secret == longest


def test_a_key_that_is_not_a_fernet_key_is_named_but_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFERRAL_ENV", "development")
    bad = "not-a-key-but-something-secret-looking"
    monkeypatch.setenv("REFERRAL_WEBHOOK_SECRET_KEYS", f"{NEW_KEY},{bad}")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "REFERRAL_WEBHOOK_SECRET_KEYS" in message and "key 2" in message
    assert bad not in message and NEW_KEY not in message


def test_keys_are_read_comma_separated_and_seal_round_trips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFERRAL_ENV", "development")
    monkeypatch.setenv("REFERRAL_WEBHOOK_SECRET_KEYS", f" {NEW_KEY} , {OLD_KEY} ")
    settings = load_settings()
    assert [k.get_secret_value() for k in settings.webhook_secret_keys] == [NEW_KEY, OLD_KEY]
    assert NEW_KEY not in repr(settings)
    secret = signing.new_secret()
    sealed = SecretBox([OLD_KEY]).seal(secret)
    assert SecretBox([NEW_KEY, OLD_KEY]).open(sealed) == secret
