"""Alembic environment: run against the connection `Database.upgrade` hands in, or the URL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from sandlot.store import models

config = context.config
target_metadata = models.Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        _migrate(connection)
    engine.dispose()


def _migrate(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
