"""watchers, answer templates, customer companies (issue 30); existing rows keep their
values (new columns are NULL: no company until one is added)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "company",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "company_domain",
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"]),
        sa.PrimaryKeyConstraint("domain"),
    )
    op.create_index("ix_company_domain_company_id", "company_domain", ["company_id"])
    op.create_table(
        "company_member",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"]),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_index("ix_company_member_company_id", "company_member", ["company_id"])
    for table in ("customer", "ticket"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("company_id", sa.Integer(), nullable=True))
            batch.create_foreign_key(f"fk_{table}_company_id", "company", ["company_id"], ["id"])
            batch.create_index(f"ix_{table}_company_id", ["company_id"])
    op.create_table(
        "ticket_watcher",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agent.id"]),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"]),
        sa.PrimaryKeyConstraint("ticket_id", "agent_id"),
    )
    op.create_index("ix_ticket_watcher_agent_id", "ticket_watcher", ["agent_id"])
    op.create_table(
        "answer_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("then", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "queue", "language"),
    )


def downgrade() -> None:
    op.drop_table("answer_template")
    op.drop_index("ix_ticket_watcher_agent_id", "ticket_watcher")
    op.drop_table("ticket_watcher")
    for table in ("ticket", "customer"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_company_id")
            batch.drop_constraint(f"fk_{table}_company_id", type_="foreignkey")
            batch.drop_column("company_id")
    op.drop_table("company_member")
    op.drop_table("company_domain")
    op.drop_table("company")
