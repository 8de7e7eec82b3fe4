"""escalations: the next escalation instant per ticket, fired levels, pending index

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXED = ("escalation_at", "pending_until")


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("escalation_at", sa.DateTime(timezone=True), nullable=True))
        for column in INDEXED:
            batch.create_index(
                f"ix_ticket_{column}",
                [column],
                sqlite_where=sa.text(f"{column} IS NOT NULL"),
                postgresql_where=sa.text(f"{column} IS NOT NULL"),
            )
    op.create_table(
        "escalation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("clock", sa.String(length=20), nullable=False),
        sa.Column("due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name="fk_escalation_ticket_id_ticket"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_escalation"),
        sa.UniqueConstraint(
            "ticket_id", "clock", "due", "level", name="uq_escalation_ticket_id_clock_due_level"
        ),
    )


def downgrade() -> None:
    op.drop_table("escalation")
    with op.batch_alter_table("ticket") as batch:
        for column in INDEXED:
            batch.drop_index(f"ix_ticket_{column}")
        batch.drop_column("escalation_at")
