"""SandboxManager on the session's real runc driver and a temporary SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandlot.config import ServerSettings, Settings
from sandlot.lifecycle import errors
from sandlot.lifecycle import manager as lifecycle
from sandlot.lifecycle import timers as lifecycle_timers
from sandlot.runtime import target
from sandlot.runtime.drivers.runc import RuncDriver
from sandlot.store import db, keys


@pytest.fixture
async def manager(
    driver: RuncDriver, tmp_path: Path
) -> AsyncIterator[lifecycle.SandboxManager]:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade()
    settings = Settings(runtime=driver.settings, server=ServerSettings(max_timeout=600))
    m = lifecycle.SandboxManager(driver, database, settings)
    m.team = keys.default_team(database)  # type: ignore[attr-defined]
    yield m
    await m.end_all()
    database.close()


async def test_create_get_kill(manager: lifecycle.SandboxManager) -> None:
    team = manager.team  # type: ignore[attr-defined]
    with pytest.raises(errors.InvalidRequest, match="cpuCount 64 is above this server's maximum of 2 per sandbox"):
        await manager.create(team, cpu_count=64)
    sbx = await manager.create(team, timeout=10_000, metadata={"a": "b"}, cpu_count=2)
    assert manager.get(team, sbx.id) is sbx
    assert sbx.cpu_count == 2
    assert (sbx.end_at - sbx.started_at).total_seconds() == pytest.approx(600, abs=2), (
        "clamped to max_timeout"
    )
    with pytest.raises(errors.SandboxNotFound):
        manager.get("someone-else", sbx.id)
    await manager.kill(team, sbx.id)
    with pytest.raises(errors.SandboxNotFound):
        manager.get(team, sbx.id)


async def test_resolve(manager: lifecycle.SandboxManager) -> None:
    team = manager.team  # type: ignore[attr-defined]
    secure = await manager.create(team, timeout=60)
    open_ = await manager.create(team, timeout=60, secure=False)
    found = await manager.resolve(secure.id, secure.access_token)
    assert (
        found.sandbox_id == secure.id
        and found.address
        and found.filesystem.root.is_dir()
    )
    with pytest.raises(target.TokenRejected):
        await manager.resolve(secure.id, None)
    with pytest.raises(target.TokenRejected):
        await manager.resolve(secure.id, open_.access_token or "wrong")
    assert (await manager.resolve(open_.id, None)).sandbox_id == open_.id
    with pytest.raises(target.SandboxGone):
        await manager.resolve("nosuchsandbox", None)
    await manager.kill(team, secure.id)
    with pytest.raises(target.SandboxGone):
        await manager.resolve(secure.id, secure.access_token)


async def test_timers_end_sandboxes(manager: lifecycle.SandboxManager) -> None:
    team = manager.team  # type: ignore[attr-defined]
    sbx = await manager.create(team, timeout=1)
    timers = lifecycle_timers.Timers(manager)
    timers.start()
    try:
        for _ in range(40):
            if sbx.id not in {s.id for s in manager.live()}:
                break
            await asyncio.sleep(0.1)
        assert sbx.id not in {s.id for s in manager.live()}
    finally:
        await timers.aclose()


async def test_start_marks_lost_sandboxes_killed(
    manager: lifecycle.SandboxManager, driver: RuncDriver
) -> None:
    team = manager.team  # type: ignore[attr-defined]
    kept = await manager.create(team, timeout=60)
    lost = await manager.create(team, timeout=60)
    await driver.destroy(
        sandbox_id=lost.id
    )  # behind the manager's back, as a crash would
    again = lifecycle.SandboxManager(driver, manager.database, manager.settings)
    report = await again.start()
    assert lost.id in report.missing and kept.id in report.kept
    assert [s.id for s in again.live()] == [kept.id]
    manager._live.pop(lost.id)


async def test_paging_tokens(manager: lifecycle.SandboxManager) -> None:
    team = manager.team  # type: ignore[attr-defined]
    made = [
        await manager.create(team, timeout=60, metadata={"p": "1"}) for _ in range(3)
    ]
    page, token = manager.list(team, metadata={"p": "1"}, order="asc", limit=2)
    assert [s.id for s in page] == [s.id for s in made[:2]] and token
    rest, token = manager.list(
        team, metadata={"p": "1"}, order="asc", limit=2, next_token=token
    )
    assert [s.id for s in rest] == [made[2].id] and token is None
    with pytest.raises(errors.InvalidRequest):
        manager.list(team, next_token="bm9wZQ")
    assert dataclasses.asdict(made[0])["metadata"] == {"p": "1"}
