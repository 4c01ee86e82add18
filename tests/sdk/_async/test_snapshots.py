"""Snapshots, restart, auto-resume and the idle timeout through the SDK, against a real server."""

from __future__ import annotations

import uuid

import pytest

from sandlot import AsyncSandbox
from sandlot.sdk import _synchronization, exceptions
from tests import conftest
from tests.sdk._async.test_lifecycle import _count, _start_counter
from tests.sdk.servers import SdkServer

pytestmark = [pytest.mark.slow, conftest.needs_criu]


async def test_boot_says_how_the_processes_started(sbx: AsyncSandbox) -> None:
    assert (await sbx.get_info()).boot == "clean"
    await sbx.pause()
    await sbx.resume()
    assert (await sbx.get_info()).boot == "resume"
    [child] = await sbx.fork()
    async with child:
        assert (await child.get_info()).boot == "fork"


async def test_a_memory_snapshot_starts_sandboxes_where_it_was(sdk_server: SdkServer, sbx: AsyncSandbox) -> None:
    name = f"warm-{uuid.uuid4().hex[:6]}"
    await _start_counter(sbx)
    await sbx.files.write("/home/user/state.txt", "snapshotted")
    before = await _count(sbx)
    first = await sbx.create_snapshot(name)
    try:
        assert (first.snapshot_id, first.sandbox_id, first.memory) == (f"{name}:v1", sbx.sandbox_id, True)
        assert first.size_bytes > 0 and first.created_at is not None
        assert (await sbx.get_info()).state == "running"  # the source goes on
        assert await _count(sbx) >= before
        second = await AsyncSandbox.create_snapshot(sbx.sandbox_id, name, config=sdk_server.config)
        assert second.snapshot_id == f"{name}:v2"
        mine = {s.snapshot_id for s in await sbx.list_snapshots()}
        assert {first.snapshot_id, second.snapshot_id} <= mine
        by_name = await AsyncSandbox.list_snapshots(name=name, config=sdk_server.config)
        assert {s.snapshot_id for s in by_name} == {first.snapshot_id, second.snapshot_id}
        assert len(await AsyncSandbox.list_snapshots(name=name, limit=1, config=sdk_server.config)) == 1
        async with await AsyncSandbox.create(first.snapshot_id, timeout=120, config=sdk_server.config) as twin:
            assert (await twin.get_info()).boot == "fork"
            assert await _count(twin) >= before  # its processes went on from the snapshot
            assert await twin.files.read("/home/user/state.txt") == "snapshotted"
            # deleting every version of the snapshot leaves the sandbox made from it whole
            assert await AsyncSandbox.delete_snapshot(name, config=sdk_server.config) is True
            assert await twin.files.read("/home/user/state.txt") == "snapshotted"
        assert await AsyncSandbox.delete_snapshot(first.snapshot_id, config=sdk_server.config) is False
        assert await AsyncSandbox.list_snapshots(name=name, config=sdk_server.config) == []
        with pytest.raises(exceptions.TemplateNotFoundError):
            await AsyncSandbox.create(first.snapshot_id, config=sdk_server.config)
    finally:
        await AsyncSandbox.delete_snapshot(name, config=sdk_server.config)


async def test_a_filesystem_snapshot_boots_clean_on_its_files(sdk_server: SdkServer, sbx: AsyncSandbox) -> None:
    await _start_counter(sbx)
    await sbx.files.write("/home/user/state.txt", "files only")
    snap = await sbx.create_snapshot(memory=False)
    try:
        assert snap.memory is False and snap.snapshot_id.startswith("snap-")
        async with await AsyncSandbox.create(snap.snapshot_id, timeout=120, config=sdk_server.config) as fresh:
            assert (await fresh.get_info()).boot == "clean"
            assert await fresh.files.read("/home/user/state.txt") == "files only"
            counter = await fresh.commands.run("curl -s http://127.0.0.1:8080/ || echo none")
            assert counter.stdout.strip() == "none"  # no process came with the files
        assert await sbx.delete_snapshot(snap.snapshot_id) is True
    finally:
        await AsyncSandbox.delete_snapshot(snap.snapshot_id, config=sdk_server.config)


async def test_a_paused_sandbox_cannot_be_snapshotted(sbx: AsyncSandbox) -> None:
    await sbx.pause()
    with pytest.raises(exceptions.AlreadyExistsError):
        await sbx.create_snapshot()


async def test_restart_ends_every_process_and_keeps_the_files(sdk_server: SdkServer, sbx: AsyncSandbox) -> None:
    await _start_counter(sbx)
    await sbx.files.write("/home/user/kept.txt", "kept")
    await _count(sbx)
    await sbx.restart(timeout=120)
    info = await sbx.get_info()
    assert (info.state, info.boot) == ("running", "clean")
    assert await sbx.files.read("/home/user/kept.txt") == "kept"
    gone = await sbx.commands.run("curl -s http://127.0.0.1:8080/ || echo none")
    assert gone.stdout.strip() == "none"
    await sbx.pause()
    await AsyncSandbox.restart(sbx.sandbox_id, config=sdk_server.config)  # paused: comes back running
    assert (await sbx.get_info()).state == "running"
    assert (await sbx.commands.run("cat /home/user/kept.txt")).stdout == "kept"


async def test_auto_resume_on_the_first_sandbox_plane_request(sdk_server: SdkServer) -> None:
    async with await AsyncSandbox.create(
        timeout=120, auto_pause=True, auto_resume=True, config=sdk_server.config
    ) as sbx:
        info = await sbx.get_info()
        assert info.lifecycle is not None and info.lifecycle.auto_resume is True
        await _start_counter(sbx)
        before = await _count(sbx)
        assert await sbx.pause() is True
        assert await _count(sbx) >= before  # the command itself woke it
        assert (await sbx.get_info()).state == "running"


async def test_idle_timeout_pauses_an_idle_sandbox_and_activity_keeps_it(sdk_server: SdkServer) -> None:
    # Only lists are watched: a request naming the sandbox (its info) is activity (docs/lifecycle.md).
    suite = uuid.uuid4().hex[:8]
    config = sdk_server.config
    async with await AsyncSandbox.create(
        timeout=300, idle_timeout=3, auto_pause=True, metadata={"suite": suite}, config=config
    ) as sbx:
        assert (await sbx.get_info()).idle_timeout == 3
        for _ in range(5):  # a command every second: never 3 s idle
            await sbx.commands.run("true")
            await _synchronization.asleep(1)
        assert await AsyncSandbox.list(metadata={"suite": suite}, state="paused", config=config) == []
        for _ in range(100):
            await _synchronization.asleep(0.2)
            if await AsyncSandbox.list(metadata={"suite": suite}, state="paused", config=config):
                break
        else:
            raise AssertionError("an idle sandbox was not paused after its idle timeout")
