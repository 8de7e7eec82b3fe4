"""search: the full-text index of articles (FTS5 on SQLite, tsvector on PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

The DDL lives in search.py (schema.sql shows it too); articles stored before this
revision are indexed by the upgrade itself.  A later change of the index needs a
migration that drops the tables and calls search.create again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from otrs_mailgate.store import search

    search.create(op.get_bind())


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute("DROP TABLE article_fts" if sqlite else "DROP TABLE article_search")
