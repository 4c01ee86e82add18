"""The sandbox state machine (`SandboxManager`) on the in-memory `FakeDriver`: every state,
every move between them, what the store keeps over a restart, and what a failed driver call
leaves, in milliseconds and without root.

The fake stands in for runc only to reach these states fast; what a user sees of a sandbox
(its processes, memory and files across a pause, a fork, a snapshot, a crash) is tested with
real runc in tests/api and tests/runtime. Only the manager's public methods are used, and the
driver's own ones to look at, or act behind the manager's back as a crash would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from datetime import UTC, datetime

import pytest

from sandlot.config import Settings
from sandlot.lifecycle import errors
from sandlot.lifecycle import manager as lifecycle
from sandlot.lifecycle import timers as lifecycle_timers
from sandlot.runtime import errors as runtime_errors
from sandlot.runtime import models, target
from sandlot.runtime.drivers.fake import FakeDriver
from sandlot.store import db
from tests.lifecycle.conftest import MakeManager

RUNNING, PAUSED = models.SandboxState.RUNNING, models.SandboxState.PAUSED
SLEEP = models.ProcessSpec(["sleep", "infinity"], tag="background")


async def state(fake: FakeDriver, sandbox_id: str) -> models.SandboxState:
    return (await fake.info(sandbox_id=sandbox_id)).state


async def tags(fake: FakeDriver, sandbox_id: str) -> list[str]:
    return [p.tag for p in await fake.processes(sandbox_id=sandbox_id)]


async def test_create_get_list_kill(manager: lifecycle.SandboxManager, fake: FakeDriver, team: str) -> None:
    sbx = await manager.create(team, timeout=10_000, metadata={"app": "a"}, env_vars={"GREETING": "hi"}, cpu_count=2)
    other = await manager.create(team, metadata={"app": "b"}, secure=False)
    assert manager.get(team, sbx.id) is sbx
    assert (sbx.state, sbx.boot, sbx.cpu_count) == ("running", "clean", 2)
    assert (sbx.end_at - sbx.started_at).total_seconds() == pytest.approx(600, abs=2), "clamped to max_timeout"
    assert sbx.access_token and other.access_token is None
    info = await fake.info(sandbox_id=sbx.id)
    assert (info.state, dict(info.metadata), info.limits.cpu_cores) == (RUNNING, {"app": "a"}, 2)
    assert [s.id for s in manager.list(team, metadata={"app": "a"})[0]] == [sbx.id]
    assert {s.id for s in manager.list(team)[0]} == {sbx.id, other.id}
    with pytest.raises(errors.SandboxNotFound):
        manager.get("another-team", sbx.id)
    await manager.kill(team, sbx.id)
    with pytest.raises(errors.SandboxNotFound):
        manager.get(team, sbx.id)
    with pytest.raises(errors.SandboxNotFound):
        await manager.kill(team, sbx.id)
    assert [i.sandbox_id for i in await fake.list()] == [other.id]


async def test_list_pages(manager: lifecycle.SandboxManager, team: str) -> None:
    made = [await manager.create(team, metadata={"p": "1"}) for _ in range(3)]
    await manager.create(team)
    page, token = manager.list(team, metadata={"p": "1"}, order="asc", limit=2)
    assert [s.id for s in page] == [s.id for s in made[:2]] and token
    rest, token = manager.list(team, metadata={"p": "1"}, order="asc", limit=2, next_token=token)
    assert [s.id for s in rest] == [made[2].id] and token is None
    newest_first, _ = manager.list(team, metadata={"p": "1"})
    assert [s.id for s in newest_first] == [s.id for s in reversed(made)]
    with pytest.raises(errors.InvalidRequest):
        manager.list(team, next_token="bm9wZQ")
    with pytest.raises(errors.InvalidRequest):
        manager.list(team, limit=0)


async def test_bad_creates_leave_nothing(manager: lifecycle.SandboxManager, fake: FakeDriver, team: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="cpuCount 64 is above this server's maximum of 2"):
        await manager.create(team, cpu_count=64)
    with pytest.raises(errors.InvalidRequest, match="not a valid environment variable name"):
        await manager.create(team, env_vars={"1X": "y"})
    with pytest.raises(errors.TemplateNotFound):
        await manager.create(team, template="nosuchtemplate")
    with pytest.raises(errors.SnapshotNotFound):
        await manager.create(team, template="nosuchsnapshot:v3")
    fake.fail_next("create")
    with pytest.raises(errors.RuntimeFailure, match="creating the sandbox failed"):
        await manager.create(team)
    assert manager.live() == [] and await fake.list() == []


async def test_unknown_ids(manager: lifecycle.SandboxManager, team: str) -> None:
    for call in (
        manager.pause(team, "nosuch"),
        manager.resume(team, "nosuch"),
        manager.connect(team, "nosuch"),
        manager.fork(team, "nosuch"),
        manager.snapshot(team, "nosuch"),
        manager.restart(team, "nosuch"),
        manager.set_timeout(team, "nosuch", 10),
        manager.kill(team, "nosuch"),
    ):
        with pytest.raises(errors.SandboxNotFound):
            await call


async def test_pause_and_resume(manager: lifecycle.SandboxManager, fake: FakeDriver, team: str) -> None:
    sbx = await manager.create(team)
    stream = await fake.start(sandbox_id=sbx.id, process=SLEEP)
    await manager.pause(team, sbx.id)
    assert sbx.state == "paused" and await state(fake, sbx.id) is PAUSED
    checkpoint = (await fake.info(sandbox_id=sbx.id)).checkpoint
    assert checkpoint is not None and checkpoint.is_relative_to(manager.snapshots.root) and any(checkpoint.iterdir())
    with pytest.raises(runtime_errors.StreamClosed):
        await stream.wait()
    with pytest.raises(errors.Conflict, match="already paused"):
        await manager.pause(team, sbx.id)
    with pytest.raises(errors.Conflict, match="resume it before forking"):
        await manager.fork(team, sbx.id)
    with pytest.raises(errors.Conflict, match="resume it before snapshotting"):
        await manager.snapshot(team, sbx.id)

    assert await manager.connect(team, sbx.id, timeout=100) == (sbx, True)
    assert (sbx.state, sbx.boot) == ("running", "resume") and await state(fake, sbx.id) is RUNNING
    assert (sbx.end_at - datetime.now(UTC)).total_seconds() == pytest.approx(100, abs=2)
    assert await tags(fake, sbx.id) == ["background"], "its processes go on"
    assert not checkpoint.exists(), "a resume spends the checkpoint"
    with pytest.raises(errors.Conflict, match="already running"):
        await manager.resume(team, sbx.id)
    assert await manager.connect(team, sbx.id, timeout=10) == (sbx, False), "a connect never shortens its life"
    assert (sbx.end_at - datetime.now(UTC)).total_seconds() > 90
    await manager.pause(team, sbx.id)
    assert await manager.resume(team, sbx.id) is sbx and sbx.state == "running"


async def test_a_failed_pause_leaves_it_running(
    manager: lifecycle.SandboxManager, fake: FakeDriver, team: str
) -> None:
    sbx = await manager.create(team)
    await fake.start(sandbox_id=sbx.id, process=SLEEP)
    fake.fail_next("checkpoint")
    with pytest.raises(errors.RuntimeFailure, match="it goes on running"):
        await manager.pause(team, sbx.id)
    assert sbx.state == "running" and await state(fake, sbx.id) is RUNNING
    assert await tags(fake, sbx.id) == ["background"]
    assert not any(manager.snapshots.root.glob(f"{sbx.id}/*")), "no half-made checkpoint is left"
    await manager.pause(team, sbx.id)
    assert sbx.state == "paused"


async def test_a_failed_resume_leaves_it_paused(
    manager: lifecycle.SandboxManager, fake: FakeDriver, team: str
) -> None:
    sbx = await manager.create(team)
    await manager.pause(team, sbx.id)
    fake.fail_next("restore")
    with pytest.raises(errors.RuntimeFailure, match="it stays paused"):
        await manager.connect(team, sbx.id)
    assert sbx.state == "paused" and await state(fake, sbx.id) is PAUSED
    assert (await manager.connect(team, sbx.id))[1] is True and sbx.state == "running"


async def test_auto_resume_on_the_sandbox_plane(manager: lifecycle.SandboxManager, fake: FakeDriver, team: str) -> None:
    auto = await manager.create(team, auto_resume=True, timeout=120)
    plain = await manager.create(team)
    open_ = await manager.create(team, secure=False)
    assert (await manager.resolve(open_.id, None)).sandbox_id == open_.id, "no token to check"
    for sbx in (auto, plain):
        await manager.pause(team, sbx.id)
    for wrong in ("wrong", None, plain.access_token):
        with pytest.raises(target.TokenRejected):
            await manager.resolve(auto.id, wrong)
    assert auto.state == "paused", "a request without the token wakes nothing"
    found = await manager.resolve(auto.id, auto.access_token)
    assert found.sandbox_id == auto.id and found.filesystem.root.is_dir()
    assert (auto.state, auto.boot) == ("running", "resume") and await state(fake, auto.id) is RUNNING
    assert (auto.end_at - datetime.now(UTC)).total_seconds() == pytest.approx(120, abs=2)
    with pytest.raises(target.SandboxGone):
        await manager.resolve(plain.id, plain.access_token)
    assert plain.state == "paused"
    with pytest.raises(target.SandboxGone):
        await manager.resolve("nosuch", None)
    await manager.kill(team, auto.id)
    with pytest.raises(target.SandboxGone):
        await manager.resolve(auto.id, auto.access_token)


async def test_fork(manager: lifecycle.SandboxManager, fake: FakeDriver, team: str) -> None:
    parent = await manager.create(team, metadata={"app": "a"}, env_vars={"K": "v"})
    await fake.start(sandbox_id=parent.id, process=SLEEP)
    children = await manager.fork(team, parent.id, count=2, timeout=60)
    assert len({c.id for c in children} | {parent.id}) == 3
    assert len({c.access_token for c in children} | {parent.access_token}) == 3
    for child in children:
        assert manager.get(team, child.id) is child
        assert (child.state, child.boot, child.env_vars) == ("running", "fork", {"K": "v"})
        assert child.metadata == {"app": "a", "forkedFrom": parent.id}
        assert await tags(fake, child.id) == ["background"], "a copy of the parent's processes"
    assert parent.state == "running" and await tags(fake, parent.id) == ["background"]
    with pytest.raises(errors.InvalidRequest):
        await manager.fork(team, parent.id, count=0)
    fake.fail_next("fork")
    with pytest.raises(errors.RuntimeFailure, match="forking the sandbox failed"):
        await manager.fork(team, parent.id)
    assert len(manager.live()) == 3 and len(await fake.list()) == 3


async def test_snapshots(manager: lifecycle.SandboxManager, fake: FakeDriver, team: str) -> None:
    source = await manager.create(team, env_vars={"K": "v"}, memory_mb=256)
    await fake.start(sandbox_id=source.id, process=SLEEP)
    root = (await fake.filesystem(sandbox_id=source.id)).root
    (root / "home" / "user" / "notes.txt").write_text("kept")
    with pytest.raises(errors.Conflict, match="is a template's"):
        await manager.snapshot(team, source.id, name="base")
    fake.fail_next("snapshot")
    with pytest.raises(errors.RuntimeFailure, match="it goes on running"):
        await manager.snapshot(team, source.id, name="mine")
    assert (await manager.snapshots.list(team))[0] == [] and source.state == "running"

    first = await manager.snapshot(team, source.id, name="mine")
    second = await manager.snapshot(team, source.id, name="mine", memory=False)
    assert (first.version, second.version) == (1, 2) and source.state == "running"
    with pytest.raises(errors.InvalidRequest, match="leave them out"):
        await manager.create(team, template="mine", cpu_count=1)
    warm = await manager.create(team, template="mine:v1", env_vars={"X": "y"})
    cold = await manager.create(team, template="mine")  # the newest version: files only
    for sbx in (warm, cold):
        assert (sbx.template, sbx.memory_mb, sbx.env_vars["K"]) == ("base", 256, "v")
        files = (await fake.filesystem(sandbox_id=sbx.id)).root
        assert (files / "home" / "user" / "notes.txt").read_text() == "kept"
    assert (warm.boot, warm.env_vars["X"], await tags(fake, warm.id)) == ("fork", "y", ["background"])
    assert (cold.boot, await tags(fake, cold.id)) == ("clean", [])
    await manager.kill(team, source.id)
    assert (await manager.create(team, template="mine:v1")).boot == "fork", "a snapshot outlives its sandbox"


async def test_restart(manager: lifecycle.SandboxManager, fake: FakeDriver, settings: Settings, team: str) -> None:
    running = await manager.create(team)
    paused = await manager.create(team)
    for sbx in (running, paused):
        await fake.start(sandbox_id=sbx.id, process=SLEEP)
    await manager.pause(team, paused.id)
    for sbx in (running, paused):
        assert await manager.restart(team, sbx.id, timeout=50) is sbx
        assert (sbx.state, sbx.boot) == ("running", "clean") and await tags(fake, sbx.id) == []
        assert (sbx.end_at - datetime.now(UTC)).total_seconds() == pytest.approx(50, abs=2)
    assert not any(manager.snapshots.root.glob(f"{paused.id}/*")), "the checkpoint is spent"

    await manager.pause(team, paused.id)
    assert (await manager.connect(team, paused.id, memory=False))[1] is True, "a resume without memory"
    assert (paused.boot, await tags(fake, paused.id)) == ("clean", [])

    (settings.runtime.templates_dir / "base" / "current").rmdir()
    with pytest.raises(errors.TemplateNotFound, match="left as it was"):
        await manager.restart(team, running.id)
    assert running.state == "running"
    fake.fail_next("restart")
    with pytest.raises(errors.RuntimeFailure, match="it was ended"):
        await manager.restart(team, running.id)
    with pytest.raises(errors.SandboxNotFound):
        manager.get(team, running.id)
    with pytest.raises(runtime_errors.SandboxNotFound):
        await fake.info(sandbox_id=running.id)


async def test_timers_end_or_pause_sandboxes_at_their_end(
    manager: lifecycle.SandboxManager, fake: FakeDriver, team: str
) -> None:
    ends = await manager.create(team)
    pauses = await manager.create(team, auto_pause=True)
    lives = await manager.create(team, timeout=100)
    for sbx in (ends, pauses):
        await manager.set_timeout(team, sbx.id, 0)
    wait = await manager.end_due()
    assert wait is not None and 95 < wait <= 100, "the next end is the one left"
    assert {s.id: s.state for s in manager.live()} == {pauses.id: "paused", lives.id: "running"}
    assert await state(fake, pauses.id) is PAUSED
    with pytest.raises(runtime_errors.SandboxNotFound):
        await fake.info(sandbox_id=ends.id)


async def test_the_timer_task_acts_on_its_own(manager: lifecycle.SandboxManager, team: str) -> None:
    timers = lifecycle_timers.Timers(manager)
    timers.start()
    try:
        sbx = await manager.create(team, timeout=0)
        for _ in range(100):
            if not manager.live():
                break
            await asyncio.sleep(0.01)
        assert sbx.id not in {s.id for s in manager.live()}, "ended by the timer, woken by the create"
    finally:
        await timers.aclose()


async def test_idle_timeout_waits_for_running_commands(
    manager: lifecycle.SandboxManager, fake: FakeDriver, team: str
) -> None:
    sbx = await manager.create(team, idle_timeout=5)
    stream = await fake.start(sandbox_id=sbx.id, process=SLEEP)
    sbx.last_active -= 10  # nobody has named it for 10 s
    await manager.end_due()
    assert manager.get(team, sbx.id).state == "running", "a command runs: it is not idle"
    await stream.signal(signal.SIGTERM)
    assert (await stream.wait()).signal == signal.SIGTERM
    sbx.last_active -= 10
    await manager.end_due()
    assert manager.live() == []


async def test_retention_ends_old_paused_sandboxes(
    fake: FakeDriver, database: db.Database, settings: Settings, team: str
) -> None:
    brief = dataclasses.replace(settings, admission=dataclasses.replace(settings.admission, retention_days=1e-9))
    manager = lifecycle.SandboxManager(fake, database, brief)
    await manager.start()
    sbx = await manager.create(team)
    await manager.pause(team, sbx.id)
    await manager.end_due()
    assert manager.live() == [] and await fake.list() == []
    assert not (manager.snapshots.root / sbx.id).exists()


async def test_a_restarted_manager_adopts_what_the_driver_holds(
    manager: lifecycle.SandboxManager, make_manager: MakeManager, fake: FakeDriver, team: str
) -> None:
    running = await manager.create(team, env_vars={"K": "v"}, metadata={"m": "1"})
    paused = await manager.create(team)
    await manager.pause(team, paused.id)
    destroyed = await manager.create(team)
    dead = await manager.create(team)
    # Behind the manager's back, as a crash or a host reboot would: one gone, one whose init
    # died, one the store never knew.
    await fake.destroy(sandbox_id=destroyed.id)
    fake.kill_init(dead.id)
    await fake.create(spec=models.SandboxSpec(sandbox_id="stray"))

    again = await make_manager()
    assert {s.id: s.state for s in again.live()} == {running.id: "running", paused.id: "paused"}
    assert {i.sandbox_id for i in await fake.list()} == {running.id, paused.id}
    adopted = again.get(team, running.id)
    assert (adopted.env_vars, adopted.metadata, adopted.access_token) == (
        {"K": "v"}, {"m": "1"}, running.access_token
    )
    assert (await again.connect(team, paused.id))[1] is True
    assert await state(fake, paused.id) is RUNNING
    with pytest.raises(errors.SandboxNotFound):
        again.get(team, destroyed.id)


async def test_a_restarted_manager_believes_the_driver_over_the_store(
    manager: lifecycle.SandboxManager, make_manager: MakeManager, fake: FakeDriver, team: str
) -> None:
    """A server killed after the driver checkpointed a sandbox (or restored one) but before
    the store said so: the next start makes the store say what the driver holds."""
    paused_behind = await manager.create(team)
    resumed_behind = await manager.create(team)
    await manager.pause(team, resumed_behind.id)
    image = manager.snapshots.new_checkpoint_dir(paused_behind.id, "pause")
    await fake.checkpoint(sandbox_id=paused_behind.id, image_dir=image)
    await fake.restore(sandbox_id=resumed_behind.id)

    again = await make_manager()
    assert again.get(team, paused_behind.id).state == "paused"
    assert (again.get(team, resumed_behind.id).state, again.get(team, resumed_behind.id).boot) == ("running", "resume")
    assert (await again.connect(team, paused_behind.id))[1] is True
    assert await state(fake, paused_behind.id) is RUNNING


async def test_a_failed_destroy_is_finished_by_the_next_start(
    manager: lifecycle.SandboxManager, make_manager: MakeManager, fake: FakeDriver, team: str
) -> None:
    sbx = await manager.create(team)
    fake.fail_next("destroy")
    await manager.kill(team, sbx.id)
    with pytest.raises(errors.SandboxNotFound):
        manager.get(team, sbx.id)
    assert await state(fake, sbx.id) is RUNNING, "left behind, nobody's"
    await make_manager()
    assert await fake.list() == []
