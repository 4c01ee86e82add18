"""A `SandboxManager` on the in-memory `FakeDriver` and a temporary SQLite store.

For the state machine's unit tests only (tests/lifecycle/test_state_machine.py): what a user
sees of a sandbox is tested end to end on the real runc driver (test_manager.py here,
tests/api). Nothing here needs root or spawns a process; the fixtures are not named
``driver``, so the session's runc driver and its leak census stay out of these tests.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sandlot.config import AdmissionSettings, RuntimeSettings, ServerSettings, Settings
from sandlot.lifecycle import manager as lifecycle
from sandlot.runtime import models
from sandlot.runtime.drivers.fake import FakeDriver
from sandlot.store import db, keys

MakeManager = Callable[[], Awaitable[lifecycle.SandboxManager]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Small disks and no disk floor (admission asks the real filesystem), no warm pool, and
    one built template, ``base`` (a directory, as the manager and the driver look for it)."""
    runtime = RuntimeSettings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        userns=False,
        default_limits=models.Limits(disk_mb=64),
    )
    (runtime.templates_dir / "base" / "current").mkdir(parents=True)
    runtime.data_dir.mkdir()
    return Settings(
        runtime=runtime,
        server=ServerSettings(max_timeout=600, pool_min=0, pool_max=0),
        admission=AdmissionSettings(disk_free_floor_mb=0),
    )


@pytest.fixture
async def fake(settings: Settings) -> AsyncIterator[FakeDriver]:
    async with FakeDriver(settings.runtime) as driver:
        yield driver


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty store at the head revision, made once: the migrations take most of a test's
    time otherwise."""
    path = tmp_path_factory.mktemp("migrated")
    database = db.Database(db.sqlite_url(path))
    database.upgrade()
    database.close()
    return path / "sandlot.db"


@pytest.fixture
def database(settings: Settings, migrated: Path) -> Iterator[db.Database]:
    shutil.copyfile(migrated, settings.state_dir / migrated.name)
    database = db.Database(db.sqlite_url(settings.state_dir))
    yield database
    database.close()


@pytest.fixture
def team(database: db.Database) -> str:
    return keys.default_team(database)


@pytest.fixture
async def make_manager(
    fake: FakeDriver, database: db.Database, settings: Settings
) -> AsyncIterator[MakeManager]:
    """Start a manager on the same driver and store, as a server restart does (the sandboxes
    the driver holds stay); every one made is ended with the test."""
    made: list[lifecycle.SandboxManager] = []

    async def make() -> lifecycle.SandboxManager:
        manager = lifecycle.SandboxManager(fake, database, settings)
        await manager.start()
        made.append(manager)
        return manager

    yield make
    for manager in reversed(made):
        await manager.end_all()


@pytest.fixture
async def manager(make_manager: MakeManager) -> lifecycle.SandboxManager:
    return await make_manager()
