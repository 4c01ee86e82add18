# Generated from sandlot/sdk/_async/commands.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""``sandbox.commands``: run shell commands in a sandbox, in the foreground or the background.

A command is ``/bin/bash -l -c CMD`` started through ``process.Process/Start``; its output
arrives as a stream of events, which a foreground :meth:`Commands.run` reads to the end and
a background one hands to a task (a thread in the sync SDK), so output callbacks fire as output
arrives either way. :class:`CommandHandle` is also what ``sandbox.pty`` returns.

Why ``run`` kills a command that times out: the Connect deadline only bounds the *stream*, and
the server may leave the process running; a caller who asked for ``timeout=5`` expects what
``subprocess.run`` does, so the SDK sends SIGKILL before raising :class:`TimeoutError`.

Example:
    >>> result = sbx.commands.run("echo hello; echo oops >&2")
    >>> result.stdout, result.stderr
    ('hello\\n', 'oops\\n')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypedDict, Unpack, overload

from sandlot.sdk import _synchronization, exceptions
from sandlot.sdk._sync.connection import Connection, MessageStream
from sandlot.sdk._core import connect, models, process

__all__ = ["CommandHandle", "Commands"]

DEFAULT_TIMEOUT = 60.0
OutputCallback = Callable[[str], object]
PtyCallback = Callable[[bytes], object]


class Outputs(TypedDict, total=False):
    """Where a command's output goes: the keyword arguments of ``CommandHandle``."""

    on_stdout: OutputCallback | None
    on_stderr: OutputCallback | None
    on_pty: PtyCallback | None
    pty: bool


class CommandHandle:
    """A started command (or terminal): wait for it, feed its stdin, kill it, or let it run.

    Attributes:
        pid: The process id inside the sandbox.

    Example:
        >>> handle = sbx.commands.run("sleep 1; echo done", background=True)
        >>> (handle.wait()).stdout
        'done\\n'
    """

    def __init__(
        self,
        commands: Commands,
        stream: MessageStream,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        on_pty: PtyCallback | None = None,
        pty: bool = False,
    ) -> None:
        self._commands = commands
        self._stream = stream
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._on_pty = on_pty
        self._pty = pty
        self._collector = process.OutputCollector()
        self._task: _synchronization.BackgroundTask | None = None
        self._error: BaseException | None = None
        self._done = False
        self._disconnected = False
        self.pid = 0

    def _open(self) -> None:
        """Read the ``start`` event: it must come first, and it carries the pid."""
        first = self._stream.first("the process stream ended before its start event")
        event = process.parse_event(first)
        if not isinstance(event, process.StartEvent):
            self._stream.close()
            raise exceptions.ProtocolError(f"expected a start event first, got {first!r}")
        self.pid = event.pid
        self._collector.pid = event.pid

    def _background(self) -> None:
        self._task = _synchronization.BackgroundTask(self._consume)

    def _consume(self) -> None:
        try:
            for message in self._stream:
                event = process.parse_event(message)
                if isinstance(event, process.DataEvent):
                    self._deliver(event)
                elif isinstance(event, process.EndEvent):
                    self._collector.end = event
        except BaseException as exc:  # noqa: BLE001 - kept for wait()
            if not self._disconnected:
                self._error = exc
        finally:
            self._finish_decoding()
            self._done = True
            self._stream.close()

    def _deliver(self, event: process.DataEvent) -> None:
        if event.pty is not None:
            if self._on_pty is not None:
                self._on_pty(event.pty)
            return
        text = self._collector.add(event)
        if text:
            callback = self._on_stdout if event.stdout is not None else self._on_stderr
            if callback is not None:
                callback(text)

    def _finish_decoding(self) -> None:
        tail_out, tail_err = self._collector.finish()
        if tail_out and self._on_stdout is not None:
            self._on_stdout(tail_out)
        if tail_err and self._on_stderr is not None:
            self._on_stderr(tail_err)

    @property
    def stdout(self) -> str:
        """Standard output received so far."""
        return self._collector.stdout

    @property
    def stderr(self) -> str:
        """Standard error received so far."""
        return self._collector.stderr

    @property
    def exit_code(self) -> int | None:
        """The exit code, or None while the command runs."""
        return self._collector.end.exit_code if self._collector.end else None

    def wait(self) -> models.CommandResult:
        """Wait for the command to end.

        Returns:
            The :class:`CommandResult` of a command that exited with code 0.

        Raises:
            CommandExitError: if it exited with another code (the output is attached).
            TimeoutError: if the command's timeout passed first.

        Example:
            >>> handle = sbx.commands.run("exit 0", background=True)
            >>> (handle.wait()).exit_code
            0
        """
        if self._task is not None:
            self._task.wait()
        elif not self._done:
            self._consume()
        if self._error is not None:
            raise self._error
        if self._disconnected and self._collector.end is None:
            raise exceptions.SandlotError("disconnected from the command before it ended")
        result = self._collector.result()
        if result.exit_code != 0:
            raise exceptions.CommandExitError(result)
        return result

    def kill(self) -> bool:
        """Kill the command (SIGKILL). Returns False if it was already gone.

        Example:
            >>> handle.kill()
            True
        """
        return self._commands.kill(self.pid)

    def send_stdin(self, data: str | bytes) -> None:
        """Write ``data`` to the command's stdin (it must have been started with ``stdin=True``).

        Example:
            >>> handle.send_stdin("hello\\n")
        """
        self._commands._send_input(self.pid, data, pty=self._pty)

    def close_stdin(self) -> None:
        """Close the command's stdin, so it reads end-of-file.

        Example:
            >>> handle.close_stdin()
        """
        self._commands.close_stdin(self.pid)

    def disconnect(self) -> None:
        """Stop receiving the command's output; the command goes on running.

        Reattach later with ``commands.connect(pid)``.

        Example:
            >>> handle.disconnect()
            >>> handle = sbx.commands.connect(handle.pid)
        """
        self._disconnected = True
        self._stream.close()
        if self._task is not None:
            self._task.wait()


class RunOptions(TypedDict, total=False):
    """The keyword arguments of ``run`` besides ``background``, which picks what it returns.

    They type the two overloads of ``run``; ``run`` itself documents them and has the defaults.
    """

    envs: Mapping[str, str] | None
    cwd: str | None
    user: str | None
    timeout: float | None
    stdin: bool
    tag: str | None
    on_stdout: OutputCallback | None
    on_stderr: OutputCallback | None


class Commands:
    """Run and manage commands in one sandbox (``sandbox.commands``).

    Example:
        >>> sbx.commands.run("pip --version", user="root", cwd="/")
        CommandResult(stdout='pip 23.0.1 ...', stderr='', exit_code=0, error=None)
    """

    def __init__(self, connection: Connection, headers: Mapping[str, str]) -> None:
        self._connection = connection
        self._headers = dict(headers)

    @overload
    def run(
        self, cmd: str, *, background: Literal[False] = False, **options: Unpack[RunOptions]
    ) -> models.CommandResult: ...

    @overload
    def run(
        self, cmd: str, *, background: Literal[True], **options: Unpack[RunOptions]
    ) -> CommandHandle: ...

    def run(
        self,
        cmd: str,
        *,
        background: bool = False,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        stdin: bool = False,
        tag: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> Any:
        """Run ``cmd`` with ``bash -l -c``.

        Args:
            cmd: The shell command line, passed to bash unmodified.
            background: Return an :class:`CommandHandle` as soon as it started.
            envs: Extra environment variables.
            cwd: Working directory (default: the user's home).
            user: Linux user to run as (default: the server's, ``user``); ``"root"`` for root.
            timeout: Seconds before the command is killed and :class:`TimeoutError` raised.
                Default 60 in the foreground, none in the background; 0 means none.
            stdin: Keep stdin open for ``send_stdin`` (otherwise it reads end-of-file).
            tag: A name to find the process by in ``list()`` and ``connect(tag)``.
            on_stdout: Called with each piece of decoded standard output.
            on_stderr: Called with each piece of decoded standard error.

        Returns:
            A :class:`CommandResult` in the foreground; an :class:`CommandHandle` with
            ``background=True``.

        Raises:
            CommandExitError: a foreground command exited with a non-zero code.
            TimeoutError: a foreground command ran past ``timeout``.

        Example:
            >>> (sbx.commands.run("echo $GREETING", envs={"GREETING": "hi"})).stdout
            'hi\\n'
        """
        if timeout is None:
            timeout = 0.0 if background else DEFAULT_TIMEOUT
        request = process.start_request(cmd, envs=envs, cwd=cwd, stdin=stdin, tag=tag)
        handle = self._start(
            process.path("Start"), request, user=user, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr
        )
        if background:
            handle._background()
            return handle
        try:
            return handle.wait()
        except exceptions.TimeoutError:
            self._kill_quietly(handle.pid)
            raise

    def connect(
        self,
        pid: int | str,
        *,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> CommandHandle:
        """Attach to a running command by pid or tag; output from now on reaches the handle.

        Example:
            >>> handle = sbx.commands.connect("server")
            >>> handle.kill()
            True
        """
        handle = self._start(
            process.path("Connect"),
            process.connect_request(pid),
            user=None,
            timeout=timeout or 0.0,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )
        handle._background()
        return handle

    def list(self) -> list[models.ProcessInfo]:
        """The processes running in the sandbox that were started through the SDK.

        Example:
            >>> [p.tag for p in sbx.commands.list()]
            ['server']
        """
        answer = self._rpc("List", {})
        return process.parse_process_list(answer)

    def kill(self, pid: int | str) -> bool:
        """Kill a process (SIGKILL) by pid or tag. Returns False if there was no such process.

        Example:
            >>> sbx.commands.kill(12345)
            False
        """
        try:
            self._rpc("SendSignal", process.signal_request(pid))
        except exceptions.NotFoundError:
            return False
        return True

    def send_stdin(self, pid: int | str, data: str | bytes) -> None:
        """Write to the stdin of a process started with ``stdin=True``.

        Example:
            >>> sbx.commands.send_stdin(handle.pid, "yes\\n")
        """
        self._send_input(pid, data, pty=False)

    def close_stdin(self, pid: int | str) -> None:
        """Close the stdin of a process started with ``stdin=True``.

        Example:
            >>> sbx.commands.close_stdin(handle.pid)
        """
        self._rpc("CloseStdin", process.close_stdin_request(pid))

    # ----------------------------------------------------------------------- shared

    def _send_input(self, pid: int | str, data: str | bytes, *, pty: bool) -> None:
        self._rpc("SendInput", process.send_input_request(pid, data, pty=pty))

    def _rpc(self, method: str, message: dict[str, Any], *, user: str | None = None) -> dict[str, Any]:
        headers = {**self._headers, **connect.basic_auth(user)}
        return self._connection.rpc(process.path(method), message, headers=headers)

    def _start(
        self,
        route: str,
        message: dict[str, Any],
        *,
        user: str | None,
        timeout: float,
        **outputs: Unpack[Outputs],
    ) -> CommandHandle:
        headers = {**self._headers, **connect.basic_auth(user)}
        stream = self._connection.stream(route, message, headers=headers, timeout=timeout)
        handle = CommandHandle(self, stream, **outputs)
        handle._open()
        return handle

    def _kill_quietly(self, pid: int) -> None:
        with contextlib.suppress(exceptions.SandlotError):
            self.kill(pid)
