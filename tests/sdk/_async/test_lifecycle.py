"""Pause with memory, resume and fork through the SDK, against a real server with CRIU and runc."""

from __future__ import annotations

import pytest

from sandlot import AsyncSandbox
from sandlot.sdk import _synchronization, exceptions
from tests import conftest
from tests.runtime.test_checkpoint import COUNTER  # a count in memory only, served on :8080
from tests.sdk.servers import SdkServer

pytestmark = [pytest.mark.slow, conftest.needs_criu]


async def _start_counter(sbx: AsyncSandbox) -> None:
    await sbx.files.write("/home/user/counter.py", COUNTER)
    await sbx.commands.run("nohup python3 /home/user/counter.py >/dev/null 2>&1 &")


async def _count(sbx: AsyncSandbox) -> int:
    for _ in range(100):
        result = await sbx.commands.run("curl -s http://127.0.0.1:8080/ || true", timeout=10)
        if result.stdout.strip().isdigit():
            return int(result.stdout)
        await _synchronization.asleep(0.1)
    raise AssertionError("the counter never answered")


async def test_pause_keeps_memory_and_files_and_says_when_it_did_nothing(sbx: AsyncSandbox) -> None:
    await _start_counter(sbx)
    await sbx.files.write("/home/user/note.txt", "written before the pause")
    before = await _count(sbx)
    assert await sbx.pause() is True
    assert (await sbx.get_info()).state == "paused"
    assert await sbx.pause() is False  # already paused: nothing to do, no error
    assert not await sbx.is_running()
    with pytest.raises(exceptions.SandboxNotRunningError):
        await sbx.commands.run("true")
    assert await sbx.resume(timeout=120) is True
    after = await _count(sbx)
    assert after >= before, "the counter started again from zero: memory was not kept"
    assert await sbx.files.read("/home/user/note.txt") == "written before the pause"
    assert await sbx.resume() is False  # running: nothing to do
    assert (await sbx.get_info()).state == "running"


async def test_class_forms_and_connect_resume_by_id(sdk_server: SdkServer, sbx: AsyncSandbox) -> None:
    await _start_counter(sbx)
    before = await _count(sbx)
    assert await AsyncSandbox.pause(sbx.sandbox_id, config=sdk_server.config) is True
    assert await AsyncSandbox.pause(sbx.sandbox_id, config=sdk_server.config) is False
    again = await AsyncSandbox.connect(sbx.sandbox_id, config=sdk_server.config)  # resumes it
    try:
        assert await _count(again) >= before
        assert await AsyncSandbox.resume(sbx.sandbox_id, config=sdk_server.config) is False
        assert await AsyncSandbox.pause(sbx.sandbox_id, config=sdk_server.config) is True
        assert await AsyncSandbox.resume(sbx.sandbox_id, 60, config=sdk_server.config) is True
        assert await _count(sbx) >= before  # the original object works on: same id, same token
    finally:
        await again.aclose()
    with pytest.raises(exceptions.SandboxNotFoundError):
        await AsyncSandbox.pause("doesnotexist", config=sdk_server.config)
    with pytest.raises(exceptions.SandboxNotFoundError):
        await AsyncSandbox.resume("doesnotexist", config=sdk_server.config)


async def test_fork_copies_memory_and_files_and_the_copies_diverge(sbx: AsyncSandbox) -> None:
    await _start_counter(sbx)
    await sbx.files.write("/home/user/shared.txt", "from the original")
    before = await _count(sbx)
    children = await sbx.fork(2, timeout=120)
    try:
        assert len(children) == 2
        ids = {c.sandbox_id for c in children}
        assert len(ids) == 2 and sbx.sandbox_id not in ids
        for child in children:
            assert await _count(child) >= before  # its memory came from the original
            assert await child.files.read("/home/user/shared.txt") == "from the original"
            assert (await child.get_info()).metadata.get("forkedFrom") == sbx.sandbox_id
        first, second = children
        await first.files.write("/home/user/mine.txt", "first only")
        assert not await second.files.exists("/home/user/mine.txt")
        assert not await sbx.files.exists("/home/user/mine.txt")
        assert (await sbx.commands.run("echo original still runs")).stdout == "original still runs\n"
        assert await first.kill() is True
        assert await second.is_running()  # killing one copy leaves the other alone
    finally:
        for child in children:
            async with child:  # kills it (a second kill is a harmless False) and closes it
                pass


async def test_fork_by_id_and_fork_of_a_paused_sandbox(sdk_server: SdkServer, sbx: AsyncSandbox) -> None:
    [child] = await AsyncSandbox.fork(sbx.sandbox_id, config=sdk_server.config)
    async with child:
        assert (await child.commands.run("echo copy")).stdout == "copy\n"
    assert await sbx.pause() is True
    with pytest.raises(exceptions.AlreadyExistsError):
        await sbx.fork()
    with pytest.raises(exceptions.InvalidArgumentError):
        await sbx.fork(0)


async def test_auto_pause_at_timeout_then_connect_resumes(sdk_server: SdkServer) -> None:
    sbx = await AsyncSandbox.create(timeout=3, auto_pause=True, config=sdk_server.config)
    try:
        info = await sbx.get_info()
        assert info.lifecycle is not None and info.lifecycle.on_timeout == "pause"
        await sbx.files.write("/home/user/kept.txt", "still here")
        for _ in range(150):
            info = await sbx.get_info()
            if info.state == "paused":
                break
            await _synchronization.asleep(0.1)
        else:
            log = (sdk_server.data_dir / "server.log").read_text()[-3000:]
            raise AssertionError(f"the sandbox was not paused at its timeout: {info}\n{log}")
        again = await AsyncSandbox.connect(sbx.sandbox_id, timeout=60, config=sdk_server.config)
        try:
            assert await again.files.read("/home/user/kept.txt") == "still here"
        finally:
            await again.aclose()
    finally:
        await sbx.kill()
        await sbx.aclose()
