"""Commands through the SDK against a real server (async source; the sync tests are generated)."""

from __future__ import annotations

import time

import pytest

from sandlot import AsyncSandbox, CommandExitError, SandlotError
from sandlot.sdk import _synchronization, exceptions
from tests.sdk._async.helpers import wait_for

pytestmark = pytest.mark.slow


async def test_output_and_exit_code(sbx: AsyncSandbox) -> None:
    result = await sbx.commands.run("echo hello; echo oops >&2")
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "oops\n", 0)
    with pytest.raises(CommandExitError) as info:
        await sbx.commands.run("echo partial; echo bad >&2; exit 3")
    assert (info.value.exit_code, info.value.stdout, info.value.stderr) == (3, "partial\n", "bad\n")
    assert isinstance(info.value, SandlotError)


async def test_special_characters_multiline_and_unicode(sbx: AsyncSandbox) -> None:
    tricky = "a'b\"c $HOME `x` \\ ; | & * ? ☃ 𝄞"
    result = await sbx.commands.run(f"printf '%s' {_quote(tricky)}")
    assert result.stdout == tricky
    result = await sbx.commands.run("for i in 1 2 3; do echo line $i; done\necho after")
    assert result.stdout == "line 1\nline 2\nline 3\nafter\n"
    big = await sbx.commands.run("seq 1 20000")
    assert big.stdout.splitlines()[-1] == "20000" and len(big.stdout.splitlines()) == 20000


async def test_invalid_utf8_becomes_replacement_characters(sbx: AsyncSandbox) -> None:
    result = await sbx.commands.run(r"printf 'ok\xff\xfe!\xe2\x98\x83'")
    assert result.stdout == "ok\ufffd\ufffd!☃"


async def test_callbacks_see_output_as_it_arrives(sbx: AsyncSandbox) -> None:
    out: list[str] = []
    err: list[str] = []
    await sbx.commands.run("echo a; sleep 0.2; echo b >&2; echo c", on_stdout=out.append, on_stderr=err.append)
    assert "".join(out) == "a\nc\n"
    assert "".join(err) == "b\n"


async def test_envs_cwd_and_users(sbx: AsyncSandbox) -> None:
    assert (await sbx.commands.run("echo $FOO-$BAR", envs={"FOO": "x y", "BAR": "z"})).stdout == "x y-z\n"
    assert (await sbx.commands.run("pwd", cwd="/tmp")).stdout == "/tmp\n"
    assert (await sbx.commands.run("pwd")).stdout == "/home/user\n"
    assert (await sbx.commands.run("whoami")).stdout == "user\n"
    assert (await sbx.commands.run("whoami; id -u", user="root")).stdout == "root\n0\n"
    with pytest.raises(CommandExitError):
        await sbx.commands.run("touch /root/nope")
    await sbx.commands.run("touch /root/yes", user="root")


async def test_timeout_kills_the_command(sbx: AsyncSandbox) -> None:
    started = time.monotonic()
    with pytest.raises(exceptions.TimeoutError):
        await sbx.commands.run("echo started > /tmp/t; sleep 30; echo late > /tmp/t", timeout=1)
    assert time.monotonic() - started < 15
    for _ in range(100):
        processes = await sbx.commands.list()
        if not [p for p in processes if "sleep 30" in " ".join(p.args)]:
            break
        await _synchronization.asleep(0.1)
    else:
        raise AssertionError("the timed-out command is still running")
    assert (await sbx.files.read("/tmp/t")) == "started\n"


async def test_background_connect_and_kill(sbx: AsyncSandbox) -> None:
    seen: list[str] = []
    handle = await sbx.commands.run(
        "for i in $(seq 1 200); do echo tick $i; sleep 0.05; done", background=True, tag="ticker"
    )
    assert handle.pid > 0
    listed = {p.pid: p for p in await sbx.commands.list()}
    assert listed[handle.pid].tag == "ticker"
    assert listed[handle.pid].args[-1].startswith("for i in")
    await wait_for(lambda: "tick 2\n" in handle.stdout, what="first ticks")
    await handle.disconnect()
    again = await sbx.commands.connect(handle.pid, on_stdout=seen.append)
    await wait_for(lambda: len(seen) > 2, what="output after reconnecting")
    assert await again.kill() is True
    with pytest.raises(CommandExitError) as info:
        await again.wait()
    assert info.value.exit_code != 0
    assert await sbx.commands.kill(handle.pid) is False
    assert handle.pid not in {p.pid for p in await sbx.commands.list()}


async def test_disconnected_command_keeps_running(sbx: AsyncSandbox) -> None:
    handle = await sbx.commands.run("sleep 3; echo still-here", background=True, tag="kept")
    await handle.disconnect()
    await _synchronization.asleep(0.5)
    assert handle.pid in {p.pid for p in await sbx.commands.list()}
    again = await sbx.commands.connect(handle.pid)
    assert (await again.wait()).stdout == "still-here\n"


async def test_connect_by_tag(sbx: AsyncSandbox) -> None:
    handle = await sbx.commands.run("sleep 0.5; echo tagged-done", background=True, tag="job")
    attached = await sbx.commands.connect("job")
    assert attached.pid == handle.pid
    result = await attached.wait()
    assert result.exit_code == 0
    assert (await handle.wait()).stdout == "tagged-done\n"


async def test_stdin(sbx: AsyncSandbox) -> None:
    handle = await sbx.commands.run("cat; echo end", background=True, stdin=True)
    await handle.send_stdin("first line\n")
    await sbx.commands.send_stdin(handle.pid, b"second \xe2\x98\x83\n")
    await wait_for(lambda: "second" in handle.stdout, what="the echo of stdin")
    await handle.close_stdin()
    result = await handle.wait()
    assert result.stdout == "first line\nsecond ☃\nend\n"


async def test_without_stdin_the_command_reads_eof(sbx: AsyncSandbox) -> None:
    assert (await sbx.commands.run("cat; echo eof", timeout=10)).stdout == "eof\n"


async def test_unknown_pid(sbx: AsyncSandbox) -> None:
    assert await sbx.commands.kill(999999) is False
    with pytest.raises(exceptions.NotFoundError):
        await sbx.commands.connect(999999)
    with pytest.raises(exceptions.NotFoundError):
        await sbx.commands.send_stdin(999999, "x")


async def test_killed_sandbox_is_not_running(sbx: AsyncSandbox) -> None:
    other = await AsyncSandbox.create(timeout=60, config=sbx.config)
    try:
        assert (await other.commands.run("echo up")).stdout == "up\n"
        assert await other.kill() is True
        with pytest.raises(exceptions.SandboxNotRunningError):
            await other.commands.run("echo down")
        assert await other.kill() is False
    finally:
        await other.aclose()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
