"""security (issue 19): history rows name the audit key of their HMAC; agents' web
sessions are rows (random cookie per login, revoked on logout); outbox recipients one
a line instead of comma separated (a quoted local part may hold a comma)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("history") as batch:
        batch.add_column(
            sa.Column("key_id", sa.String(length=16), nullable=False, server_default="")
        )
    op.create_table(
        "web_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent.id"],
            name=op.f("fk_web_session_agent_id_agent"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_session")),
    )
    op.create_index(op.f("ix_web_session_agent_id"), "web_session", ["agent_id"])
    op.get_bind().execute(
        sa.text("UPDATE outbox SET rcpt_to = replace(rcpt_to, ',', :nl) WHERE status = 'queued'"),
        {"nl": "\n"},
    )


def downgrade() -> None:
    op.get_bind().execute(
        sa.text("UPDATE outbox SET rcpt_to = replace(rcpt_to, :nl, ',') WHERE status = 'queued'"),
        {"nl": "\n"},
    )
    op.drop_index(op.f("ix_web_session_agent_id"), table_name="web_session")
    op.drop_table("web_session")
    with op.batch_alter_table("history") as batch:
        batch.drop_column("key_id")
