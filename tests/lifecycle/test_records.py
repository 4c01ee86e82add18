"""LiveSandbox's rows in a real SQLite store: what is written is read back whole, in the
columns and with the values the store has always held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from sandlot.lifecycle import records
from sandlot.runtime import models
from sandlot.store import db, keys
from sandlot.store.vault import Vault


def _sandbox(team: str) -> records.LiveSandbox:
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return records.LiveSandbox(
        id=records.new_sandbox_id(), team_id=team, template="base", alias="al",
        metadata={"k": "v"}, env_vars={"SECRET": "s3"}, started_at=started,
        end_at=started + timedelta(seconds=90), state=models.SandboxState.PAUSED,
        access_token="tok", secure=True, auto_pause=True, cpu_count=1.5, memory_mb=256,
        disk_mb=1024, pids=99, allow_internet=False, network={"allowOut": ["10.0.0.0/8"], "denyOut": []},
        auto_resume=True, timeout=90, idle_timeout=30, boot=models.Boot.FORK,
    )


def test_a_sandbox_reads_back_whole_from_its_row(tmp_path: Path) -> None:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade()
    try:
        store = records.Records(database, Vault.open(tmp_path))
        written = _sandbox(keys.default_team(database))
        store.insert([written])
        [read] = store.load_live()
        assert read == written
        assert (read.state, read.boot) == (models.SandboxState.PAUSED, models.Boot.FORK)
        with database.session() as session:
            row = session.execute(
                sa.text("SELECT state, boot, metadata, env_vars_sealed, access_token_sealed FROM sandboxes")
            ).one()
        assert (row.state, row.boot) == ("paused", "fork")
        assert "k" in row.metadata and "s3" not in row.env_vars_sealed and "tok" not in row.access_token_sealed

        store.mark_killed([written.id])
        assert store.load_live() == []
    finally:
        database.close()
