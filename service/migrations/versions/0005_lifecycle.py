"""The lifecycle (lifecycle.md): versions, the moves' records, history, duplicate keys.

Expand only. Every existing referral is at version 1 with its intake as the first line of its
history; its duplicate-match keys are computed from its stored payload.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.referrals.duplicates import match_keys

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("triage", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("withdrawal", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("closure", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("match_nhs_number", sa.String(10), nullable=True))
        batch.add_column(sa.Column("match_name_key", sa.String(64), nullable=True))
        batch.create_index("ix_referrals_match_nhs_number", ["match_nhs_number"])
        batch.create_index("ix_referrals_match_name_key", ["match_name_key"])
    op.create_table(
        "referral_moves",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_org", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.UniqueConstraint("referral_id", "version", name="uq_referral_move_version"),
    )
    op.create_index("ix_referral_moves_referral_id", "referral_moves", ["referral_id"])
    op.execute(
        "INSERT INTO referral_moves (referral_id, version, action, from_status, to_status, at, "
        "by_org) SELECT id, 1, 'intake', NULL, status, received_at, org FROM referrals"
    )
    _backfill_match_keys()


def _backfill_match_keys() -> None:
    referrals = sa.table(
        "referrals",
        sa.column("id", sa.String()),
        sa.column("payload", sa.JSON()),
        sa.column("match_nhs_number", sa.String()),
        sa.column("match_name_key", sa.String()),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(referrals.c.id, referrals.c.payload)).all()
    for referral_id, payload in rows:
        keys = match_keys(payload)
        connection.execute(
            referrals.update()
            .where(referrals.c.id == referral_id)
            .values(match_nhs_number=keys.nhs_number, match_name_key=keys.name_key)
        )


def downgrade() -> None:
    op.drop_index("ix_referral_moves_referral_id", table_name="referral_moves")
    op.drop_table("referral_moves")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_index("ix_referrals_match_name_key")
        batch.drop_index("ix_referrals_match_nhs_number")
        for column in ("match_name_key", "match_nhs_number", "closure", "withdrawal", "triage"):
            batch.drop_column(column)
        batch.drop_column("version")
