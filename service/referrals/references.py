"""Short human references for phone calls, e.g. PIR-7K3M-Q9XD."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L or U: nothing a caller can mishear or misread.
ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
PREFIX = "PIR"


def new_reference() -> str:
    """A random reference: 30^8 ≈ 6.6e11 values; uniqueness is enforced by the database."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"{PREFIX}-{chars[:4]}-{chars[4:]}"
