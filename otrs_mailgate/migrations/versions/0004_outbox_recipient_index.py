"""outbox: index (rcpt_to, created_at) for the per-address loop limit

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_rcpt_to_created_at", "outbox", ["rcpt_to", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_rcpt_to_created_at", table_name="outbox")
