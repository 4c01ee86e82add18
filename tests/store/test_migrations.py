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
        assert MigrationContext.configure(connection).get_current_revision() == "0002"
        assert {"teams", "api_keys", "sandboxes", "snapshots"} <= set(
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


def test_sandboxes_of_0001_get_the_lifecycle_defaults(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade("0001")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO teams (id, name, created_at) VALUES ('t', 't', '2026-01-01')")
        connection.exec_driver_sql(
            "INSERT INTO sandboxes (id, team_id, template, metadata, env_vars, started_at, end_at, state,"
            " secure, auto_pause, cpu_count, memory_mb, disk_mb, pids, allow_internet, network) VALUES"
            " ('old', 't', 'base', '{}', '{}', '2026-01-01', '2026-01-02', 'paused', 1, 1, 1.0, 512,"
            " 2048, 512, 0, '{}')"
        )
    database.upgrade()
    with database.session() as session:
        row = session.get(models.SandboxRecord, "old")
        assert row is not None
        assert (row.auto_resume, row.timeout, row.idle_timeout, row.boot) == (False, 300, None, "clean")
    database.close()
