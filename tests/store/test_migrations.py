"""The Alembic migrations: a fresh database upgrades to head, and head is what the models say."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sandlot.store import db, models


def test_fresh_database_upgrades_to_head(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade()
    database.upgrade()  # idempotent
    with database.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0001"
        assert {"teams", "api_keys", "sandboxes"} <= set(
            sa.inspect(connection).get_table_names()
        )
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.close()


def test_models_match_the_migrations(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, models.Base.metadata)
    database.close()
    assert diff == []


def test_downgrade_to_base(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade()
    with database.engine.begin() as connection:
        config = db.alembic_config(database.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    with database.engine.connect() as connection:
        assert "sandboxes" not in sa.inspect(connection).get_table_names()
    database.close()
