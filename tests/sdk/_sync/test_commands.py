# Generated from tests/sdk/_async/test_commands.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""Commands through the SDK against a real server (async source; the sync tests are generated)."""

from __future__ import annotations

import time

import pytest

from sandlot import Sandbox, CommandExitError, SandlotError
from sandlot.sdk import _synchronization, exceptions
from tests.sdk._sync.helpers import wait_for

pytestmark = pytest.mark.slow


def test_output_and_exit_code(sbx: Sandbox) -> None:
    result = sbx.commands.run("echo hello; echo oops >&2")
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "oops\n", 0)
    with pytest.raises(CommandExitError) as info:
        sbx.commands.run("echo partial; echo bad >&2; exit 3")
    assert (info.value.exit_code, info.value.stdout, info.value.stderr) == (3, "partial\n", "bad\n")
    assert isinstance(info.value, SandlotError)


def test_special_characters_multiline_and_unicode(sbx: Sandbox) -> None:
    tricky = "a'b\"c $HOME `x` \\ ; | & * ? ☃ 𝄞"
    result = sbx.commands.run(f"printf '%s' {_quote(tricky)}")
    assert result.stdout == tricky
    result = sbx.commands.run("for i in 1 2 3; do echo line $i; done\necho after")
    assert result.stdout == "line 1\nline 2\nline 3\nafter\n"
    big = sbx.commands.run("seq 1 20000")
    assert big.stdout.splitlines()[-1] == "20000" and len(big.stdout.splitlines()) == 20000


def test_invalid_utf8_becomes_replacement_characters(sbx: Sandbox) -> None:
    result = sbx.commands.run(r"printf 'ok\xff\xfe!\xe2\x98\x83'")
    assert result.stdout == "ok\ufffd\ufffd!☃"


def test_callbacks_see_output_as_it_arrives(sbx: Sandbox) -> None:
    out: list[str] = []
    err: list[str] = []
    sbx.commands.run("echo a; sleep 0.2; echo b >&2; echo c", on_stdout=out.append, on_stderr=err.append)
    assert "".join(out) == "a\nc\n"
    assert "".join(err) == "b\n"


def test_envs_cwd_and_users(sbx: Sandbox) -> None:
    assert (sbx.commands.run("echo $FOO-$BAR", envs={"FOO": "x y", "BAR": "z"})).stdout == "x y-z\n"
    assert (sbx.commands.run("pwd", cwd="/tmp")).stdout == "/tmp\n"
    assert (sbx.commands.run("pwd")).stdout == "/home/user\n"
    assert (sbx.commands.run("whoami")).stdout == "user\n"
    assert (sbx.commands.run("whoami; id -u", user="root")).stdout == "root\n0\n"
    with pytest.raises(CommandExitError):
        sbx.commands.run("touch /root/nope")
    sbx.commands.run("touch /root/yes", user="root")


def test_timeout_kills_the_command(sbx: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(exceptions.TimeoutError):
        sbx.commands.run("echo started > /tmp/t; sleep 30; echo late > /tmp/t", timeout=1)
    assert time.monotonic() - started < 15
    for _ in range(100):
        processes = sbx.commands.list()
        if not [p for p in processes if "sleep 30" in " ".join(p.args)]:
            break
        _synchronization.sleep(0.1)
    else:
        raise AssertionError("the timed-out command is still running")
    assert (sbx.files.read("/tmp/t")) == "started\n"


def test_background_connect_and_kill(sbx: Sandbox) -> None:
    seen: list[str] = []
    handle = sbx.commands.run(
        "for i in $(seq 1 200); do echo tick $i; sleep 0.05; done", background=True, tag="ticker"
    )
    assert handle.pid > 0
    listed = {p.pid: p for p in sbx.commands.list()}
    assert listed[handle.pid].tag == "ticker"
    assert listed[handle.pid].args[-1].startswith("for i in")
    wait_for(lambda: "tick 2\n" in handle.stdout, what="first ticks")
    handle.disconnect()
    again = sbx.commands.connect(handle.pid, on_stdout=seen.append)
    wait_for(lambda: len(seen) > 2, what="output after reconnecting")
    assert again.kill() is True
    with pytest.raises(CommandExitError) as info:
        again.wait()
    assert info.value.exit_code != 0
    assert sbx.commands.kill(handle.pid) is False
    assert handle.pid not in {p.pid for p in sbx.commands.list()}


def test_disconnected_command_keeps_running(sbx: Sandbox) -> None:
    handle = sbx.commands.run("sleep 3; echo still-here", background=True, tag="kept")
    handle.disconnect()
    _synchronization.sleep(0.5)
    assert handle.pid in {p.pid for p in sbx.commands.list()}
    again = sbx.commands.connect(handle.pid)
    assert (again.wait()).stdout == "still-here\n"


def test_connect_by_tag(sbx: Sandbox) -> None:
    handle = sbx.commands.run("sleep 0.5; echo tagged-done", background=True, tag="job")
    attached = sbx.commands.connect("job")
    assert attached.pid == handle.pid
    result = attached.wait()
    assert result.exit_code == 0
    assert (handle.wait()).stdout == "tagged-done\n"


def test_stdin(sbx: Sandbox) -> None:
    handle = sbx.commands.run("cat; echo end", background=True, stdin=True)
    handle.send_stdin("first line\n")
    sbx.commands.send_stdin(handle.pid, b"second \xe2\x98\x83\n")
    wait_for(lambda: "second" in handle.stdout, what="the echo of stdin")
    handle.close_stdin()
    result = handle.wait()
    assert result.stdout == "first line\nsecond ☃\nend\n"


def test_without_stdin_the_command_reads_eof(sbx: Sandbox) -> None:
    assert (sbx.commands.run("cat; echo eof", timeout=10)).stdout == "eof\n"


def test_unknown_pid(sbx: Sandbox) -> None:
    assert sbx.commands.kill(999999) is False
    with pytest.raises(exceptions.NotFoundError):
        sbx.commands.connect(999999)
    with pytest.raises(exceptions.NotFoundError):
        sbx.commands.send_stdin(999999, "x")


def test_killed_sandbox_is_not_running(sbx: Sandbox) -> None:
    other = Sandbox.create(timeout=60, config=sbx.config)
    try:
        assert (other.commands.run("echo up")).stdout == "up\n"
        assert other.kill() is True
        with pytest.raises(exceptions.SandboxNotRunningError):
            other.commands.run("echo down")
        assert other.kill() is False
    finally:
        other.close()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
