"""More audit chains: 32 instead of 8.

Each chain's head is locked from the moment intake takes it until its transaction commits, so
the number of chains bounds how many audited transactions commit at once. Two workers with
pools of 12 already hold 24 connections; with 8 chains, busy moments queued on a chain's head.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64
BEFORE, AFTER = 8, 32


def upgrade() -> None:
    heads = sa.table(
        "audit_chain_heads",
        sa.column("chain", sa.Integer()),
        sa.column("chain_seq", sa.Integer()),
        sa.column("seq", sa.BigInteger()),
        sa.column("hash", sa.String(64)),
    )
    op.bulk_insert(
        heads,
        [
            {"chain": c, "chain_seq": 0, "seq": 0, "hash": GENESIS_HASH}
            for c in range(BEFORE, AFTER)
        ],
    )


def downgrade() -> None:
    # Only chains that never received an event can go; a used chain is part of the trail.
    op.execute(
        sa.text("DELETE FROM audit_chain_heads WHERE chain >= :first AND chain_seq = 0").bindparams(
            first=BEFORE
        )
    )
