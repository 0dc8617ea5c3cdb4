"""Room for sealed webhook signing secrets (REFERRAL_WEBHOOK_SECRET_KEYS).

A sealed secret (`sealed:` + a Fernet token, about 150 characters) does not fit the 64
characters a plain one needed. Expand only: stored secrets are unchanged, and a plain one is
still used as it is.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = (("secret", False), ("previous_secret", True))


def upgrade() -> None:
    # SQLite does not enforce a VARCHAR's length, and changing one would rebuild the table
    # (batch mode), dropping it under its deliveries' foreign key: nothing to do there.
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, nullable in _COLUMNS:
        # Widening a varchar is a catalogue change in PostgreSQL: no row is rewritten.
        op.alter_column(
            "webhook_subscriptions",
            name,
            type_=sa.String(255),
            existing_type=sa.String(64),
            existing_nullable=nullable,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    sealed = op.get_bind().execute(
        sa.text(
            "SELECT count(*) FROM webhook_subscriptions "
            "WHERE length(secret) > 64 OR length(previous_secret) > 64"
        )
    )
    count = int(sealed.scalar_one())
    if count:
        raise RuntimeError(
            f"refusing to downgrade below 0009: {count} webhook subscriptions hold sealed "
            "secrets that release 0008 cannot read; delete or re-create them first"
        )
    for name, nullable in _COLUMNS:
        op.alter_column(
            "webhook_subscriptions",
            name,
            type_=sa.String(64),
            existing_type=sa.String(255),
            existing_nullable=nullable,
        )
