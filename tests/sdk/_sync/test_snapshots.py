# Generated from tests/sdk/_async/test_snapshots.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""Snapshots, restart, auto-resume and the idle timeout through the SDK, against a real server."""

from __future__ import annotations

import uuid

import pytest

from sandlot import Sandbox
from sandlot.sdk import _synchronization, exceptions
from tests import conftest
from tests.sdk._sync.test_lifecycle import _count, _start_counter
from tests.sdk.servers import SdkServer

pytestmark = [pytest.mark.slow, conftest.needs_criu]


def test_boot_says_how_the_processes_started(sbx: Sandbox) -> None:
    assert (sbx.get_info()).boot == "clean"
    sbx.pause()
    sbx.resume()
    assert (sbx.get_info()).boot == "resume"
    [child] = sbx.fork()
    with child:
        assert (child.get_info()).boot == "fork"


def test_a_memory_snapshot_starts_sandboxes_where_it_was(sdk_server: SdkServer, sbx: Sandbox) -> None:
    name = f"warm-{uuid.uuid4().hex[:6]}"
    _start_counter(sbx)
    sbx.files.write("/home/user/state.txt", "snapshotted")
    before = _count(sbx)
    first = sbx.create_snapshot(name)
    try:
        assert (first.snapshot_id, first.sandbox_id, first.memory) == (f"{name}:v1", sbx.sandbox_id, True)
        assert first.size_bytes > 0 and first.created_at is not None
        assert (sbx.get_info()).state == "running"  # the source goes on
        assert _count(sbx) >= before
        second = Sandbox.create_snapshot(sbx.sandbox_id, name, config=sdk_server.config)
        assert second.snapshot_id == f"{name}:v2"
        mine = {s.snapshot_id for s in sbx.list_snapshots()}
        assert {first.snapshot_id, second.snapshot_id} <= mine
        by_name = Sandbox.list_snapshots(name=name, config=sdk_server.config)
        assert {s.snapshot_id for s in by_name} == {first.snapshot_id, second.snapshot_id}
        assert len(Sandbox.list_snapshots(name=name, limit=1, config=sdk_server.config)) == 1
        with Sandbox.create(first.snapshot_id, timeout=120, config=sdk_server.config) as twin:
            assert (twin.get_info()).boot == "fork"
            assert _count(twin) >= before  # its processes went on from the snapshot
            assert twin.files.read("/home/user/state.txt") == "snapshotted"
            # deleting every version of the snapshot leaves the sandbox made from it whole
            assert Sandbox.delete_snapshot(name, config=sdk_server.config) is True
            assert twin.files.read("/home/user/state.txt") == "snapshotted"
        assert Sandbox.delete_snapshot(first.snapshot_id, config=sdk_server.config) is False
        assert Sandbox.list_snapshots(name=name, config=sdk_server.config) == []
        with pytest.raises(exceptions.TemplateNotFoundError):
            Sandbox.create(first.snapshot_id, config=sdk_server.config)
    finally:
        Sandbox.delete_snapshot(name, config=sdk_server.config)


def test_a_filesystem_snapshot_boots_clean_on_its_files(sdk_server: SdkServer, sbx: Sandbox) -> None:
    _start_counter(sbx)
    sbx.files.write("/home/user/state.txt", "files only")
    snap = sbx.create_snapshot(memory=False)
    try:
        assert snap.memory is False and snap.snapshot_id.startswith("snap-")
        with Sandbox.create(snap.snapshot_id, timeout=120, config=sdk_server.config) as fresh:
            assert (fresh.get_info()).boot == "clean"
            assert fresh.files.read("/home/user/state.txt") == "files only"
            counter = fresh.commands.run("curl -s http://127.0.0.1:8080/ || echo none")
            assert counter.stdout.strip() == "none"  # no process came with the files
        assert sbx.delete_snapshot(snap.snapshot_id) is True
    finally:
        Sandbox.delete_snapshot(snap.snapshot_id, config=sdk_server.config)


def test_a_paused_sandbox_cannot_be_snapshotted(sbx: Sandbox) -> None:
    sbx.pause()
    with pytest.raises(exceptions.AlreadyExistsError):
        sbx.create_snapshot()


def test_restart_ends_every_process_and_keeps_the_files(sdk_server: SdkServer, sbx: Sandbox) -> None:
    _start_counter(sbx)
    sbx.files.write("/home/user/kept.txt", "kept")
    _count(sbx)
    sbx.restart(timeout=120)
    info = sbx.get_info()
    assert (info.state, info.boot) == ("running", "clean")
    assert sbx.files.read("/home/user/kept.txt") == "kept"
    gone = sbx.commands.run("curl -s http://127.0.0.1:8080/ || echo none")
    assert gone.stdout.strip() == "none"
    sbx.pause()
    Sandbox.restart(sbx.sandbox_id, config=sdk_server.config)  # paused: comes back running
    assert (sbx.get_info()).state == "running"
    assert (sbx.commands.run("cat /home/user/kept.txt")).stdout == "kept"


def test_auto_resume_on_the_first_sandbox_plane_request(sdk_server: SdkServer) -> None:
    with Sandbox.create(
        timeout=120, auto_pause=True, auto_resume=True, config=sdk_server.config
    ) as sbx:
        info = sbx.get_info()
        assert info.lifecycle is not None and info.lifecycle.auto_resume is True
        _start_counter(sbx)
        before = _count(sbx)
        assert sbx.pause() is True
        assert _count(sbx) >= before  # the command itself woke it
        assert (sbx.get_info()).state == "running"


def test_idle_timeout_pauses_an_idle_sandbox_and_activity_keeps_it(sdk_server: SdkServer) -> None:
    # Only lists are watched: a request naming the sandbox (its info) is activity (docs/lifecycle.md).
    suite = uuid.uuid4().hex[:8]
    config = sdk_server.config
    with Sandbox.create(
        timeout=300, idle_timeout=3, auto_pause=True, metadata={"suite": suite}, config=config
    ) as sbx:
        assert (sbx.get_info()).idle_timeout == 3
        for _ in range(5):  # a command every second: never 3 s idle
            sbx.commands.run("true")
            _synchronization.sleep(1)
        assert Sandbox.list(metadata={"suite": suite}, state="paused", config=config) == []
        for _ in range(100):
            _synchronization.sleep(0.2)
            if Sandbox.list(metadata={"suite": suite}, state="paused", config=config):
                break
        else:
            raise AssertionError("an idle sandbox was not paused after its idle timeout")
