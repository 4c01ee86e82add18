# Generated from sandlot/sdk/_async/pty.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""``sandbox.pty``: interactive terminals in a sandbox.

A terminal is a login bash on a pseudo-terminal, started with ``process.Process/Start`` and a
``pty`` size. Its output is raw bytes (escape sequences and all), handed to ``on_data`` as it
arrives; input goes in as bytes through ``send_input`` (Ctrl-D is ``b"\\x04"``). The handle is
an :class:`~sandlot.sdk._sync.commands.CommandHandle`: ``wait()`` returns when the shell
exits, ``kill()`` ends it.

Unlike a command, a terminal has no deadline by default: it lives until it exits or is killed.

Example:
    >>> terminal = sbx.pty.create(PtySize(80, 24), on_data=lambda b: print(b.decode(), end=""))
    >>> sbx.pty.send_input(terminal.pid, "echo hi; exit\\n")
    >>> terminal.wait()
"""

from __future__ import annotations

from collections.abc import Mapping

from sandlot.sdk import exceptions
from sandlot.sdk._sync.commands import CommandHandle, Commands, PtyCallback
from sandlot.sdk._sync.connection import Connection
from sandlot.sdk._core import models, process

__all__ = ["Pty"]


class Pty:
    """Create and drive terminals in one sandbox (``sandbox.pty``).

    Example:
        >>> terminal = sbx.pty.create(on_data=sys.stdout.buffer.write)
        >>> sbx.pty.resize(terminal.pid, PtySize(cols=120, rows=40))
    """

    def __init__(self, connection: Connection, commands: Commands) -> None:
        self._connection = connection
        self._commands = commands

    def create(
        self,
        size: models.PtySize | None = None,
        *,
        on_data: PtyCallback | None = None,
        cmd: str | None = None,
        user: str | None = None,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandHandle:
        """Start a terminal running an interactive login bash (or ``cmd`` in it).

        Args:
            size: Columns and rows (default 80x24).
            on_data: Called with each chunk of raw terminal output.
            cmd: A command line for bash to run instead of an interactive session.
            user: Linux user (default: the server's).
            cwd: Working directory (default: the user's home).
            envs: Extra environment variables; ``TERM`` is ``xterm-256color`` unless given.
            timeout: Seconds before the terminal is ended; None or 0 for none.

        Example:
            >>> terminal = sbx.pty.create(user="root")
            >>> terminal.pid > 0
            True
        """
        request = process.pty_request(size or models.PtySize(), cmd=cmd, envs=envs, cwd=cwd)
        handle = self._commands._start(
            process.path("Start"), request, user=user, timeout=timeout or 0.0, on_pty=on_data, pty=True
        )
        handle._background()
        return handle

    def connect(self, pid: int, *, on_data: PtyCallback | None = None) -> CommandHandle:
        """Attach to a running terminal; output from now on goes to ``on_data``.

        Example:
            >>> terminal = sbx.pty.connect(pid, on_data=print)
        """
        handle = self._commands._start(
            process.path("Connect"), process.connect_request(pid), user=None, timeout=0.0, on_pty=on_data, pty=True
        )
        handle._background()
        return handle

    def send_input(self, pid: int, data: str | bytes) -> None:
        """Type ``data`` into the terminal (a str is sent as UTF-8).

        Example:
            >>> sbx.pty.send_input(terminal.pid, b"ls\\r")
        """
        self._commands._send_input(pid, data, pty=True)

    def resize(self, pid: int, size: models.PtySize) -> None:
        """Change the terminal's size; the shell gets SIGWINCH.

        Example:
            >>> sbx.pty.resize(terminal.pid, PtySize(cols=100, rows=30))
        """
        self._commands._rpc("Update", process.update_request(pid, size))

    def kill(self, pid: int) -> bool:
        """Kill the terminal's shell. Returns False if it was already gone.

        Example:
            >>> sbx.pty.kill(terminal.pid)
            True
        """
        try:
            self._commands._rpc("SendSignal", process.signal_request(pid))
        except exceptions.NotFoundError:
            return False
        return True
