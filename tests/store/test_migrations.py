"""The Alembic migrations: a fresh database upgrades to head, and head is what the models say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sandlot.store import db, models, vault


def test_fresh_database_upgrades_to_head(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade()
    database.upgrade()  # idempotent
    with database.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0003"
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
    database.upgrade(vault=vault.Vault.open(tmp_path))
    with database.session() as session:
        row = session.get(models.SandboxRecord, "old")
        assert row is not None
        assert (row.auto_resume, row.timeout, row.idle_timeout, row.boot) == (False, 300, None, "clean")
    database.close()


def _old_rows(database: db.Database) -> None:
    """A sandbox and a snapshot as a server before revision 0003 stored them: secrets in clear."""
    with database.engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO teams (id, name, created_at) VALUES ('t', 't', '2026-01-01')")
        connection.exec_driver_sql(
            "INSERT INTO sandboxes (id, team_id, template, metadata, env_vars, started_at, end_at, state,"
            " access_token, secure, auto_pause, cpu_count, memory_mb, disk_mb, pids, allow_internet, network)"
            " VALUES ('old', 't', 'base', '{}', '{\"PASSWORD\": \"hunter2-clear-env\"}', '2026-01-01',"
            " '2026-01-02', 'running', 'tok-clear-0123456789abcdef', 1, 0, 1.0, 512, 2048, 512, 0, '{}')"
        )
        connection.exec_driver_sql(
            "INSERT INTO snapshots (id, team_id, name, version, sandbox_id, template, memory, size_bytes,"
            " cpu_count, memory_mb, disk_mb, pids, env_vars, created_at) VALUES ('s1', 't', 'snap', 1, 'old',"
            " 'base', 1, 0, 1.0, 512, 2048, 512, '{\"KEY\": \"snapshot-clear-env\"}', '2026-01-01')"
        )


def _file_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.glob("sandlot.db*")))


def test_0003_seals_the_secrets_of_existing_rows(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade("0002")
    _old_rows(database)
    assert b"hunter2-clear-env" in _file_bytes(tmp_path), "the old schema held it in clear"
    with pytest.raises(RuntimeError, match="needs the server's key"):
        database.upgrade()
    key = vault.Vault.open(tmp_path)
    database.upgrade(vault=key)
    with database.session() as session:
        sandbox = session.get(models.SandboxRecord, "old")
        snapshot = session.get(models.SnapshotRecord, "s1")
        assert sandbox is not None and snapshot is not None
        assert key.unseal(sandbox.env_vars_sealed, row="sandboxes/old/env_vars") == {"PASSWORD": "hunter2-clear-env"}
        assert key.unseal(sandbox.access_token_sealed or "", row="sandboxes/old/access_token") == (
            "tok-clear-0123456789abcdef"
        ), "the same token: clients that hold it go on using it"
        assert key.unseal(snapshot.env_vars_sealed, row="snapshots/s1/env_vars") == {"KEY": "snapshot-clear-env"}
    found = _file_bytes(tmp_path)  # with the server's connection still open, as it would be
    database.close()
    for secret in (b"hunter2-clear-env", b"tok-clear-0123456789abcdef", b"snapshot-clear-env"):
        assert secret not in found, f"{secret!r} is still in the database's files"


def test_0003_downgrades_to_clear_values(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade("0002")
    _old_rows(database)
    key = vault.Vault.open(tmp_path)
    database.upgrade(vault=key)
    with database.engine.begin() as connection:
        config = db.alembic_config(database.url)
        config.attributes.update(connection=connection, vault=key)
        command.downgrade(config, "0002")
        row = connection.exec_driver_sql("SELECT env_vars, access_token FROM sandboxes").one()
    assert (json.loads(row.env_vars), row.access_token) == (
        {"PASSWORD": "hunter2-clear-env"}, "tok-clear-0123456789abcdef"
    )
    database.close()
