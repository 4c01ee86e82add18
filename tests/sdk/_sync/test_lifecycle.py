# Generated from tests/sdk/_async/test_lifecycle.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""Pause with memory, resume and fork through the SDK, against a real server with CRIU and runc."""

from __future__ import annotations

import pytest

from sandlot import Sandbox
from sandlot.sdk import _synchronization, exceptions
from tests import conftest
from tests.runtime.test_checkpoint import COUNTER  # a count in memory only, served on :8080
from tests.sdk.servers import SdkServer

pytestmark = [pytest.mark.slow, conftest.needs_criu]


def _start_counter(sbx: Sandbox) -> None:
    sbx.files.write("/home/user/counter.py", COUNTER)
    sbx.commands.run("nohup python3 /home/user/counter.py >/dev/null 2>&1 &")


def _count(sbx: Sandbox) -> int:
    for _ in range(100):
        result = sbx.commands.run("curl -s http://127.0.0.1:8080/ || true", timeout=10)
        if result.stdout.strip().isdigit():
            return int(result.stdout)
        _synchronization.sleep(0.1)
    raise AssertionError("the counter never answered")


def test_pause_keeps_memory_and_files_and_says_when_it_did_nothing(sbx: Sandbox) -> None:
    _start_counter(sbx)
    sbx.files.write("/home/user/note.txt", "written before the pause")
    before = _count(sbx)
    assert sbx.pause() is True
    assert (sbx.get_info()).state == "paused"
    assert sbx.pause() is False  # already paused: nothing to do, no error
    assert not sbx.is_running()
    with pytest.raises(exceptions.SandboxNotRunningError):
        sbx.commands.run("true")
    assert sbx.resume(timeout=120) is True
    after = _count(sbx)
    assert after >= before, "the counter started again from zero: memory was not kept"
    assert sbx.files.read("/home/user/note.txt") == "written before the pause"
    assert sbx.resume() is False  # running: nothing to do
    assert (sbx.get_info()).state == "running"


def test_class_forms_and_connect_resume_by_id(sdk_server: SdkServer, sbx: Sandbox) -> None:
    _start_counter(sbx)
    before = _count(sbx)
    assert Sandbox.pause(sbx.sandbox_id, config=sdk_server.config) is True
    assert Sandbox.pause(sbx.sandbox_id, config=sdk_server.config) is False
    again = Sandbox.connect(sbx.sandbox_id, config=sdk_server.config)  # resumes it
    try:
        assert _count(again) >= before
        assert Sandbox.resume(sbx.sandbox_id, config=sdk_server.config) is False
        assert Sandbox.pause(sbx.sandbox_id, config=sdk_server.config) is True
        assert Sandbox.resume(sbx.sandbox_id, 60, config=sdk_server.config) is True
        assert _count(sbx) >= before  # the original object works on: same id, same token
    finally:
        again.close()
    with pytest.raises(exceptions.SandboxNotFoundError):
        Sandbox.pause("doesnotexist", config=sdk_server.config)
    with pytest.raises(exceptions.SandboxNotFoundError):
        Sandbox.resume("doesnotexist", config=sdk_server.config)


def test_fork_copies_memory_and_files_and_the_copies_diverge(sbx: Sandbox) -> None:
    _start_counter(sbx)
    sbx.files.write("/home/user/shared.txt", "from the original")
    before = _count(sbx)
    children = sbx.fork(2, timeout=120)
    try:
        assert len(children) == 2
        ids = {c.sandbox_id for c in children}
        assert len(ids) == 2 and sbx.sandbox_id not in ids
        for child in children:
            assert _count(child) >= before  # its memory came from the original
            assert child.files.read("/home/user/shared.txt") == "from the original"
            assert (child.get_info()).metadata.get("forkedFrom") == sbx.sandbox_id
        first, second = children
        first.files.write("/home/user/mine.txt", "first only")
        assert not second.files.exists("/home/user/mine.txt")
        assert not sbx.files.exists("/home/user/mine.txt")
        assert (sbx.commands.run("echo original still runs")).stdout == "original still runs\n"
        assert first.kill() is True
        assert second.is_running()  # killing one copy leaves the other alone
    finally:
        for child in children:
            with child:  # kills it (a second kill is a harmless False) and closes it
                pass


def test_fork_by_id_and_fork_of_a_paused_sandbox(sdk_server: SdkServer, sbx: Sandbox) -> None:
    [child] = Sandbox.fork(sbx.sandbox_id, config=sdk_server.config)
    with child:
        assert (child.commands.run("echo copy")).stdout == "copy\n"
    assert sbx.pause() is True
    with pytest.raises(exceptions.AlreadyExistsError):
        sbx.fork()
    with pytest.raises(exceptions.InvalidArgumentError):
        sbx.fork(0)


def test_auto_pause_at_timeout_then_connect_resumes(sdk_server: SdkServer) -> None:
    sbx = Sandbox.create(timeout=3, auto_pause=True, config=sdk_server.config)
    try:
        info = sbx.get_info()
        assert info.lifecycle is not None and info.lifecycle.on_timeout == "pause"
        sbx.files.write("/home/user/kept.txt", "still here")
        for _ in range(150):
            info = sbx.get_info()
            if info.state == "paused":
                break
            _synchronization.sleep(0.1)
        else:
            log = (sdk_server.data_dir / "server.log").read_text()[-3000:]
            raise AssertionError(f"the sandbox was not paused at its timeout: {info}\n{log}")
        again = Sandbox.connect(sbx.sandbox_id, timeout=60, config=sdk_server.config)
        try:
            assert again.files.read("/home/user/kept.txt") == "still here"
        finally:
            again.close()
    finally:
        sbx.kill()
        sbx.close()
