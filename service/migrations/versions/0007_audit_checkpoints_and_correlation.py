"""Verified checkpoints of the audit chains, and the caller's correlation id on audit events.

`audit_checkpoints`: one row per chain, the last position a verification found valid, so that
`GET /v1/audit-events/verify` re-hashes only the events after it instead of the whole trail.
No rows are seeded: a chain without one starts from its first event.

`audit_events.correlation_id`: the caller's own X-Request-ID, kept apart from the service's
request id. Null for every event stored before (and for requests that sent none); a null one is
left out of the hashed document, so those events verify byte for byte as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("chain", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("chain_seq", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Nullable with no default: PostgreSQL adds it without rewriting a row (the append-only
    # trigger refuses row UPDATEs, not this).
    op.add_column("audit_events", sa.Column("correlation_id", sa.String(64), nullable=True))


def downgrade() -> None:
    # An event's hash covers its correlation id: dropping the column would make every event that
    # has one fail verification, so that is refused, before anything of 0007 is undone.
    carrying = op.get_bind().execute(
        sa.text("SELECT count(*) FROM audit_events WHERE correlation_id IS NOT NULL")
    )
    count = int(carrying.scalar_one())
    if count:
        raise RuntimeError(
            f"refusing to downgrade below 0007: {count} audit events carry a correlation id "
            "that their hashes cover, and dropping the column would break the audit trail's "
            "verification; restore a backup taken before 0007 instead"
        )
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("correlation_id")
    op.drop_table("audit_checkpoints")
