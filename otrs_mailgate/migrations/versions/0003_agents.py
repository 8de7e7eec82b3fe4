"""agents, groups, queue grants; ticket owner, lock, pending time; cc list, time accounting

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent")),
        sa.UniqueConstraint("address", name=op.f("uq_agent_address")),
        sa.UniqueConstraint("login", name=op.f("uq_agent_login")),
    )
    op.create_table(
        "agent_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_group")),
        sa.UniqueConstraint("name", name=op.f("uq_agent_group_name")),
    )
    op.create_table(
        "group_member",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agent.id"], name=op.f("fk_group_member_agent_id_agent")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["agent_group.id"], name=op.f("fk_group_member_group_id_agent_group")
        ),
        sa.PrimaryKeyConstraint("group_id", "agent_id", name=op.f("pk_group_member")),
    )
    op.create_table(
        "queue_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("access", sa.String(length=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agent.id"], name=op.f("fk_queue_grant_agent_id_agent")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["agent_group.id"], name=op.f("fk_queue_grant_group_id_agent_group")
        ),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["queue.id"], name=op.f("fk_queue_grant_queue_id_queue")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_grant")),
        sa.UniqueConstraint(
            "queue_id",
            "agent_id",
            "group_id",
            name=op.f("uq_queue_grant_queue_id_agent_id_group_id"),
        ),
    )
    op.create_index(op.f("ix_queue_grant_queue_id"), "queue_grant", ["queue_id"])
    op.create_table(
        "ticket_cc",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_ticket_cc_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_cc")),
        sa.UniqueConstraint("ticket_id", "address", name=op.f("uq_ticket_cc_ticket_id_address")),
    )
    op.create_table(
        "time_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agent.id"], name=op.f("fk_time_entry_agent_id_agent")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_time_entry_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_entry")),
    )
    op.create_index(op.f("ix_time_entry_agent_id"), "time_entry", ["agent_id"])
    op.create_index(op.f("ix_time_entry_ticket_id"), "time_entry", ["ticket_id"])
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lock_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("pending_until", sa.DateTime(timezone=True), nullable=True))
        for column in ("owner_id", "lock_until"):
            batch.create_index(
                f"ix_ticket_{column}",
                [column],
                sqlite_where=sa.text(f"{column} IS NOT NULL"),
                postgresql_where=sa.text(f"{column} IS NOT NULL"),
            )
        batch.create_foreign_key(batch.f("fk_ticket_owner_id_agent"), "agent", ["owner_id"], ["id"])
    with op.batch_alter_table("article") as batch:
        batch.add_column(sa.Column("agent_id", sa.Integer(), nullable=True))
        batch.create_index(
            "ix_article_agent_id",
            ["agent_id"],
            sqlite_where=sa.text("agent_id IS NOT NULL"),
            postgresql_where=sa.text("agent_id IS NOT NULL"),
        )
        batch.create_foreign_key(
            batch.f("fk_article_agent_id_agent"), "agent", ["agent_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("article") as batch:
        batch.drop_constraint(batch.f("fk_article_agent_id_agent"), type_="foreignkey")
        batch.drop_index(batch.f("ix_article_agent_id"))
        batch.drop_column("agent_id")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_constraint(batch.f("fk_ticket_owner_id_agent"), type_="foreignkey")
        batch.drop_index(batch.f("ix_ticket_lock_until"))
        batch.drop_index(batch.f("ix_ticket_owner_id"))
        batch.drop_column("pending_until")
        batch.drop_column("lock_until")
        batch.drop_column("owner_id")
    for table in ("time_entry", "ticket_cc", "queue_grant", "group_member", "agent_group", "agent"):
        op.drop_table(table)
