"""Alembic environment: the engine comes from otrs_mailgate.store.db, never from an ini file."""

from alembic import context

from otrs_mailgate.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # batch migrations copy a table and drop the old one; with foreign keys on,
            # dropping a table that other rows point at fails (or would empty them), so
            # they are off while the tables are rebuilt and checked once at the end
            # (on the driver's connection: SQLAlchemy would BEGIN first, and inside a
            # transaction SQLite ignores this pragma)
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE on SQLite
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration broke references: {broken[:5]}")
        connection.commit()
        if sqlite:
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `otrs-mailgate init`")
run_migrations_online()
