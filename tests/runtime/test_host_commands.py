"""Host commands (`sandlot.runtime._utils`): deadlines, cancellation, and reaping that never
takes a status somebody waits for (issue 18: a CRIU restore whose exit another operation's
reap took waited for ever)."""

from __future__ import annotations

import asyncio
import os
import re
import time

import pytest

from sandlot.runtime import _utils


def _children_named(name: str) -> list[int]:
    found = []
    for pid, stat in _utils._proc_files("stat"):
        comm, fields = stat[stat.index(b"(") + 1 : stat.rindex(b")")], stat.rsplit(b")", 1)[1].split()
        if comm == name.encode() and int(fields[1]) == os.getpid():
            found.append(pid)
    return found


async def _until_zombie(pid: int) -> None:
    for _ in range(200):
        if pid in _utils.zombie_children():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pid} never exited")


async def test_orphan_reapers_leave_a_waited_child_to_its_waiter() -> None:
    argv = ["sh", "-c", "exit 7"]
    pid = _utils.spawn(argv, fds={})
    await _until_zombie(pid)
    _utils.reap_orphans_now()
    _utils.reap_orphans_now("sh")
    assert await asyncio.wait_for(_utils.finish(pid, argv, 5), 5) == 7


async def test_concurrent_commands_each_get_their_own_exit_code() -> None:
    """Many commands of one name ending at once, each reaping orphans when it is done, as every
    CRIU run does: each still gets its own status, and none waits for ever."""

    async def one(code: int) -> int:
        try:
            await _utils.run("sh", "-c", f"sleep 0.0{code % 10}; exit {code}")
        except _utils.CommandError as exc:
            _utils.reap_orphans_now("sh")
            return exc.returncode
        return 0

    codes = list(range(1, 41))
    assert await asyncio.wait_for(asyncio.gather(*(one(c) for c in codes)), 30) == codes


async def test_a_command_past_its_deadline_is_killed_and_reaped() -> None:
    started = time.monotonic()
    with pytest.raises(_utils.CommandTimeout, match=re.escape("took over 0.3 s and was killed")):
        await _utils.run("sleep", "30", timeout=0.3)
    assert time.monotonic() - started < 5
    assert _children_named("sleep") == []


async def test_a_cancelled_caller_leaves_no_command_running() -> None:
    task = asyncio.ensure_future(_utils.run("sleep", "30"))
    await asyncio.sleep(0.2)
    assert len(_children_named("sleep")) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _children_named("sleep") == []


async def test_run_feeds_input_and_reports_failures() -> None:
    assert await _utils.run("cat", input=b"hello") == "hello"
    with pytest.raises(_utils.CommandError) as failed:
        await _utils.run("sh", "-c", "cat >&2; exit 3", input=b"oops")
    assert (failed.value.returncode, failed.value.stderr) == (3, "oops")
    assert await _utils.run("sh", "-c", "exit 4", check=False) == ""
