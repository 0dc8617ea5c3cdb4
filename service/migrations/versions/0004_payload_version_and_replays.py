"""Stored payloads carry their shape's version; idempotency keys keep the first response.

Expand only: two added columns, no rewrite. Every existing referral was accepted in shape 1;
existing keys have no stored response, which is right for them: until this release nothing
about a referral could change after intake, so the referral as it is now is the first answer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(
            sa.Column("payload_version", sa.Integer(), nullable=False, server_default="1")
        )
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("response", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("response")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("payload_version")
