"""Signing secrets at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`)
under REFERRAL_WEBHOOK_SECRET_KEYS when it is set.

The service must sign with the secret, so it cannot keep only a hash of it; sealing keeps a copy
of the database (a backup, a replica, a dump) from being enough to forge webhooks to partners.
The first key seals; every key listed opens, so the key can be rotated: put a new key first,
keep the old one after it until every subscription has rotated its secret. A stored value
without the `sealed:` prefix is a plain secret (stored before this existed, or with no key
set) and is used as it is, so nothing stored earlier stops working.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.core.settings import Settings

_SEALED = "sealed:"

logger = logging.getLogger(__name__)


class SecretUnavailable(Exception):
    """A sealed secret that none of the configured keys opens (the message holds no secret)."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys]) if keys else None

    @property
    def seals(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        """What to store for `secret`: sealed when a key is set, else the secret itself."""
        if self._fernet is None:
            return secret
        return _SEALED + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored value holds."""
        if not stored.startswith(_SEALED):
            return stored
        if self._fernet is None:
            raise SecretUnavailable("a sealed secret, and REFERRAL_WEBHOOK_SECRET_KEYS is not set")
        try:
            return self._fernet.decrypt(stored.removeprefix(_SEALED).encode()).decode()
        except InvalidToken:
            raise SecretUnavailable(
                "a sealed secret that no key in REFERRAL_WEBHOOK_SECRET_KEYS opens"
            ) from None


def from_settings(settings: Settings) -> SecretBox:
    if not settings.webhook_secret_keys and not settings.is_development:
        _warn_unsealed()
    return SecretBox([key.get_secret_value() for key in settings.webhook_secret_keys])


@cache
def _warn_unsealed() -> None:
    # Once per process: the API and its in-process dispatcher both build a box.
    logger.warning(
        "REFERRAL_WEBHOOK_SECRET_KEYS is not set: webhook signing secrets are stored unsealed"
    )
