"""Terminals through the SDK against a real server."""

from __future__ import annotations

import pytest

from sandlot import AsyncSandbox, CommandExitError, PtySize
from tests.sdk._async.helpers import wait_for

pytestmark = pytest.mark.slow


async def test_interactive_bash_input_resize_and_exit_code(sbx: AsyncSandbox) -> None:
    output = bytearray()
    terminal = await sbx.pty.create(PtySize(cols=80, rows=24), on_data=output.extend, timeout=30)
    assert terminal.pid > 0
    await sbx.pty.send_input(terminal.pid, "tty; echo size=$(stty size)\n")
    await wait_for(lambda: b"size=24 80" in output, what="the first size")
    assert b"/dev/pts/" in output
    await sbx.pty.resize(terminal.pid, PtySize(cols=120, rows=40))
    await sbx.pty.send_input(terminal.pid, b"echo size=$(stty size); echo $TERM\n")
    await wait_for(lambda: b"size=40 120" in output, what="the new size")
    assert b"xterm-256color" in output
    await sbx.pty.send_input(terminal.pid, "exit 7\n")
    with pytest.raises(CommandExitError) as info:
        await terminal.wait()
    assert info.value.exit_code == 7


async def test_ctrl_d_ends_the_shell_and_kill_ends_another(sbx: AsyncSandbox) -> None:
    early = bytearray()
    first = await sbx.pty.create(on_data=early.extend, timeout=30)
    await wait_for(lambda: b"$ " in early, what="the prompt")  # ^D before readline starts may be lost
    await sbx.pty.send_input(first.pid, b"\x04")
    assert (await first.wait()).exit_code == 0
    output = bytearray()
    second = await sbx.pty.create(on_data=output.extend, user="root", timeout=30)
    await sbx.pty.send_input(second.pid, "whoami\n")
    await wait_for(lambda: b"root" in output, what="whoami")
    assert await sbx.pty.kill(second.pid) is True
    with pytest.raises(CommandExitError):
        await second.wait()
    assert await sbx.pty.kill(second.pid) is False
