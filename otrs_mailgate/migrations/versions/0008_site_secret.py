"""site_secret: the key of the customers' status page links, made here at random

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "site_secret",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_site_secret"),
    )
    op.bulk_insert(table, [{"name": "links", "value": secrets.token_hex(32)}])


def downgrade() -> None:
    op.drop_table("site_secret")
