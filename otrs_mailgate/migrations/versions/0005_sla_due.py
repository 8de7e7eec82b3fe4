"""ticket: first response time and the three SLA due instants (partial indexes)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = ("first_response_due", "update_due", "solution_due")


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        for column in ("first_response_at", *DUE):
            batch.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
        for column in DUE:
            batch.create_index(
                f"ix_ticket_{column}",
                [column],
                sqlite_where=sa.text(f"{column} IS NOT NULL"),
                postgresql_where=sa.text(f"{column} IS NOT NULL"),
            )


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        for column in DUE:
            batch.drop_index(f"ix_ticket_{column}")
        for column in ("first_response_at", *DUE):
            batch.drop_column(column)
