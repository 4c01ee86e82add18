"""``sandbox.commands``: run shell commands in a sandbox, in the foreground or the background.

A command is ``/bin/bash -l -c CMD`` started through ``process.Process/Start``; its output
arrives as a stream of events, which a foreground :meth:`AsyncCommands.run` reads to the end and
a background one hands to a task (a thread in the sync SDK), so output callbacks fire as output
arrives either way. :class:`AsyncCommandHandle` is also what ``sandbox.pty`` returns.

Why ``run`` kills a command that times out: the Connect deadline only bounds the *stream*, and
the server may leave the process running; a caller who asked for ``timeout=5`` expects what
``subprocess.run`` does, so the SDK sends SIGKILL before raising :class:`TimeoutError`.

Example:
    >>> result = await sbx.commands.run("echo hello; echo oops >&2")
    >>> result.stdout, result.stderr
    ('hello\\n', 'oops\\n')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypedDict, Unpack, overload

from sandlot.sdk import _synchronization, exceptions
from sandlot.sdk._async.connection import AsyncConnection, AsyncMessageStream
from sandlot.sdk._core import connect, models, process

__all__ = ["AsyncCommandHandle", "AsyncCommands"]

DEFAULT_TIMEOUT = 60.0
OutputCallback = Callable[[str], object]
PtyCallback = Callable[[bytes], object]


class Outputs(TypedDict, total=False):
    """Where a command's output goes: the keyword arguments of ``AsyncCommandHandle``."""

    on_stdout: OutputCallback | None
    on_stderr: OutputCallback | None
    on_pty: PtyCallback | None
    pty: bool


class AsyncCommandHandle:
    """A started command (or terminal): wait for it, feed its stdin, kill it, or let it run.

    Attributes:
        pid: The process id inside the sandbox.

    Example:
        >>> handle = await sbx.commands.run("sleep 1; echo done", background=True)
        >>> (await handle.wait()).stdout
        'done\\n'
    """

    def __init__(
        self,
        commands: AsyncCommands,
        stream: AsyncMessageStream,
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
        self._task: _synchronization.AsyncBackgroundTask | None = None
        self._error: BaseException | None = None
        self._done = False
        self._disconnected = False
        self.pid = 0

    async def _open(self) -> None:
        """Read the ``start`` event: it must come first, and it carries the pid."""
        first = await self._stream.first("the process stream ended before its start event")
        event = process.parse_event(first)
        if not isinstance(event, process.StartEvent):
            await self._stream.aclose()
            raise exceptions.ProtocolError(f"expected a start event first, got {first!r}")
        self.pid = event.pid
        self._collector.pid = event.pid

    def _background(self) -> None:
        self._task = _synchronization.AsyncBackgroundTask(self._consume)

    async def _consume(self) -> None:
        try:
            async for message in self._stream:
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
            await self._stream.aclose()

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

    async def wait(self) -> models.CommandResult:
        """Wait for the command to end.

        Returns:
            The :class:`CommandResult` of a command that exited with code 0.

        Raises:
            CommandExitError: if it exited with another code (the output is attached).
            TimeoutError: if the command's timeout passed first.

        Example:
            >>> handle = await sbx.commands.run("exit 0", background=True)
            >>> (await handle.wait()).exit_code
            0
        """
        if self._task is not None:
            await self._task.wait()
        elif not self._done:
            await self._consume()
        if self._error is not None:
            raise self._error
        if self._disconnected and self._collector.end is None:
            raise exceptions.SandlotError("disconnected from the command before it ended")
        result = self._collector.result()
        if result.exit_code != 0:
            raise exceptions.CommandExitError(result)
        return result

    async def kill(self) -> bool:
        """Kill the command (SIGKILL). Returns False if it was already gone.

        Example:
            >>> await handle.kill()
            True
        """
        return await self._commands.kill(self.pid)

    async def send_stdin(self, data: str | bytes) -> None:
        """Write ``data`` to the command's stdin (it must have been started with ``stdin=True``).

        Example:
            >>> await handle.send_stdin("hello\\n")
        """
        await self._commands._send_input(self.pid, data, pty=self._pty)

    async def close_stdin(self) -> None:
        """Close the command's stdin, so it reads end-of-file.

        Example:
            >>> await handle.close_stdin()
        """
        await self._commands.close_stdin(self.pid)

    async def disconnect(self) -> None:
        """Stop receiving the command's output; the command goes on running.

        Reattach later with ``commands.connect(pid)``.

        Example:
            >>> await handle.disconnect()
            >>> handle = await sbx.commands.connect(handle.pid)
        """
        self._disconnected = True
        await self._stream.aclose()
        if self._task is not None:
            await self._task.wait()


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


class AsyncCommands:
    """Run and manage commands in one sandbox (``sandbox.commands``).

    Example:
        >>> await sbx.commands.run("pip --version", user="root", cwd="/")
        CommandResult(stdout='pip 23.0.1 ...', stderr='', exit_code=0, error=None)
    """

    def __init__(self, connection: AsyncConnection, headers: Mapping[str, str]) -> None:
        self._connection = connection
        self._headers = dict(headers)

    @overload
    async def run(
        self, cmd: str, *, background: Literal[False] = False, **options: Unpack[RunOptions]
    ) -> models.CommandResult: ...

    @overload
    async def run(
        self, cmd: str, *, background: Literal[True], **options: Unpack[RunOptions]
    ) -> AsyncCommandHandle: ...

    async def run(
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
            background: Return an :class:`AsyncCommandHandle` as soon as it started.
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
            A :class:`CommandResult` in the foreground; an :class:`AsyncCommandHandle` with
            ``background=True``.

        Raises:
            CommandExitError: a foreground command exited with a non-zero code.
            TimeoutError: a foreground command ran past ``timeout``.

        Example:
            >>> (await sbx.commands.run("echo $GREETING", envs={"GREETING": "hi"})).stdout
            'hi\\n'
        """
        if timeout is None:
            timeout = 0.0 if background else DEFAULT_TIMEOUT
        request = process.start_request(cmd, envs=envs, cwd=cwd, stdin=stdin, tag=tag)
        handle = await self._start(
            process.path("Start"), request, user=user, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr
        )
        if background:
            handle._background()
            return handle
        try:
            return await handle.wait()
        except exceptions.TimeoutError:
            await self._kill_quietly(handle.pid)
            raise

    async def connect(
        self,
        pid: int | str,
        *,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> AsyncCommandHandle:
        """Attach to a running command by pid or tag; output from now on reaches the handle.

        Example:
            >>> handle = await sbx.commands.connect("server")
            >>> await handle.kill()
            True
        """
        handle = await self._start(
            process.path("Connect"),
            process.connect_request(pid),
            user=None,
            timeout=timeout or 0.0,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )
        handle._background()
        return handle

    async def list(self) -> list[models.ProcessInfo]:
        """The processes running in the sandbox that were started through the SDK.

        Example:
            >>> [p.tag for p in await sbx.commands.list()]
            ['server']
        """
        answer = await self._rpc("List", {})
        return process.parse_process_list(answer)

    async def kill(self, pid: int | str) -> bool:
        """Kill a process (SIGKILL) by pid or tag. Returns False if there was no such process.

        Example:
            >>> await sbx.commands.kill(12345)
            False
        """
        try:
            await self._rpc("SendSignal", process.signal_request(pid))
        except exceptions.NotFoundError:
            return False
        return True

    async def send_stdin(self, pid: int | str, data: str | bytes) -> None:
        """Write to the stdin of a process started with ``stdin=True``.

        Example:
            >>> await sbx.commands.send_stdin(handle.pid, "yes\\n")
        """
        await self._send_input(pid, data, pty=False)

    async def close_stdin(self, pid: int | str) -> None:
        """Close the stdin of a process started with ``stdin=True``.

        Example:
            >>> await sbx.commands.close_stdin(handle.pid)
        """
        await self._rpc("CloseStdin", process.close_stdin_request(pid))

    # ----------------------------------------------------------------------- shared

    async def _send_input(self, pid: int | str, data: str | bytes, *, pty: bool) -> None:
        await self._rpc("SendInput", process.send_input_request(pid, data, pty=pty))

    async def _rpc(self, method: str, message: dict[str, Any], *, user: str | None = None) -> dict[str, Any]:
        headers = {**self._headers, **connect.basic_auth(user)}
        return await self._connection.rpc(process.path(method), message, headers=headers)

    async def _start(
        self,
        route: str,
        message: dict[str, Any],
        *,
        user: str | None,
        timeout: float,
        **outputs: Unpack[Outputs],
    ) -> AsyncCommandHandle:
        headers = {**self._headers, **connect.basic_auth(user)}
        stream = await self._connection.stream(route, message, headers=headers, timeout=timeout)
        handle = AsyncCommandHandle(self, stream, **outputs)
        await handle._open()
        return handle

    async def _kill_quietly(self, pid: int) -> None:
        with contextlib.suppress(exceptions.SandlotError):
            await self.kill(pid)
