"""An index on the audit actor's organisation, for the organisation view of the trail.

`audit:read` sees the events of its own organisation's actors (and those about its
referrals): without this index that view reads the trail in sequence order and filters it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_actor_org", "audit_events", ["actor_org"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_actor_org", table_name="audit_events")
