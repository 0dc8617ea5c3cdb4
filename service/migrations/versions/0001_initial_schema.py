"""Initial schema: referrals, idempotency keys, audit events and audit chain heads.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Must match service.audit.AUDIT_CHAINS; a later migration may add chains, never remove one.
AUDIT_CHAINS = 8
GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("reference", sa.String(16), nullable=False, unique=True),
        sa.Column("org", sa.String(16), nullable=False),
        sa.Column("submitted_by", sa.String(255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
        sa.Column("safeguarding_alert", sa.Boolean(), nullable=False),
        sa.Column("ruleset_id", sa.String(64), nullable=False),
        sa.Column("ruleset_version", sa.String(64), nullable=False),
        sa.Column("ruleset_sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
    )
    op.create_index("ix_referrals_org_received", "referrals", ["org", "received_at", "id"])
    op.create_index("ix_referrals_received", "referrals", ["received_at", "id"])

    op.create_table(
        "idempotency_keys",
        sa.Column("org", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])

    op.create_table(
        "audit_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("chain", sa.Integer(), nullable=False),
        sa.Column("chain_seq", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_sub", sa.String(255), nullable=False),
        sa.Column("actor_org", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("chain", "chain_seq", name="uq_audit_chain_position"),
    )
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_resource_id", "audit_events", ["resource_id"])

    heads = op.create_table(
        "audit_chain_heads",
        sa.Column("chain", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("chain_seq", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(
        heads,
        [{"chain": c, "chain_seq": 0, "seq": 0, "hash": GENESIS_HASH} for c in range(AUDIT_CHAINS)],
    )


def downgrade() -> None:
    op.drop_table("audit_chain_heads")
    op.drop_table("audit_events")
    op.drop_table("idempotency_keys")
    op.drop_table("referrals")
