"""encrypted and signed mail (issue 29): an article records what OpenPGP or S/MIME did
to its mail (mail/parse.Protection as JSON); an agent's keys prove command mail

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("article") as batch:
        batch.add_column(sa.Column("protection", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("agent") as batch:
        batch.add_column(sa.Column("keys", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("agent") as batch:
        batch.drop_column("keys")
    with op.batch_alter_table("article") as batch:
        batch.drop_column("protection")
