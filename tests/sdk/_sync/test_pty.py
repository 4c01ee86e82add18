# Generated from tests/sdk/_async/test_pty.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""Terminals through the SDK against a real server."""

from __future__ import annotations

import pytest

from sandlot import Sandbox, CommandExitError, PtySize
from tests.sdk._sync.helpers import wait_for

pytestmark = pytest.mark.slow


def test_interactive_bash_input_resize_and_exit_code(sbx: Sandbox) -> None:
    output = bytearray()
    terminal = sbx.pty.create(PtySize(cols=80, rows=24), on_data=output.extend, timeout=30)
    assert terminal.pid > 0
    sbx.pty.send_input(terminal.pid, "tty; echo size=$(stty size)\n")
    wait_for(lambda: b"size=24 80" in output, what="the first size")
    assert b"/dev/pts/" in output
    sbx.pty.resize(terminal.pid, PtySize(cols=120, rows=40))
    sbx.pty.send_input(terminal.pid, b"echo size=$(stty size); echo $TERM\n")
    wait_for(lambda: b"size=40 120" in output, what="the new size")
    assert b"xterm-256color" in output
    sbx.pty.send_input(terminal.pid, "exit 7\n")
    with pytest.raises(CommandExitError) as info:
        terminal.wait()
    assert info.value.exit_code == 7


def test_ctrl_d_ends_the_shell_and_kill_ends_another(sbx: Sandbox) -> None:
    early = bytearray()
    first = sbx.pty.create(on_data=early.extend, timeout=30)
    wait_for(lambda: b"$ " in early, what="the prompt")  # ^D before readline starts may be lost
    sbx.pty.send_input(first.pid, b"\x04")
    assert (first.wait()).exit_code == 0
    output = bytearray()
    second = sbx.pty.create(on_data=output.extend, user="root", timeout=30)
    sbx.pty.send_input(second.pid, "whoami\n")
    wait_for(lambda: b"root" in output, what="whoami")
    assert sbx.pty.kill(second.pid) is True
    with pytest.raises(CommandExitError):
        second.wait()
    assert sbx.pty.kill(second.pid) is False
