"""``aexecute`` and ``AsyncExecutor``: run a program once, in a fresh sandbox, and get its output.

This is sandlot's ``POST /execute``: the server takes a warm sandbox from a pool, compiles the
program if its language needs it, runs it under hard limits, and answers with what each stage
printed and how it ended (:class:`~sandlot.sdk._core.models.ExecuteResult`). No run sees a
file, process or variable of another.

:func:`aexecute` is one call with a connection of its own; :class:`AsyncExecutor` keeps one
connection for many runs (a judge grading a thousand submissions pays the TCP set-up once).
A full queue answers 429: the SDK waits its ``Retry-After`` and tries again, at most
``config.retries`` times, then raises :class:`~sandlot.RateLimitedError`. A program that fails,
times out or runs out of memory is not an exception: it is a result, with a ``status``.

Both flavours come from one source: the async one is written by hand, and scripts/unasync.py
generates the sync one from it (aexecute becomes execute, AsyncExecutor becomes Executor).

Example:
    >>> result = await aexecute('print(input()[::-1])', language="python", stdin="olleh")
    >>> result.stdout, result.status
    ('hello\\n', <StageStatus.OK: 'ok'>)
"""

from __future__ import annotations

from typing import Unpack

from sandlot.sdk._async.connection import AsyncClosing, AsyncConnection
from sandlot.sdk._core import execute as messages
from sandlot.sdk._core import models
from sandlot.sdk._core.config import ConnectionConfig, resolve_config

__all__ = ["AsyncExecutor", "aexecute"]


class AsyncExecutor(AsyncClosing):
    """Runs one-shot programs on a sandlot server over one kept-alive connection.

    Configuration comes from the arguments, then ``SANDLOT_API_URL`` and ``SANDLOT_API_KEY``.
    Use it as a context manager, or call :meth:`aclose` when done.

    Example:
        >>> async with AsyncExecutor() as executor:
        ...     for source in submissions:
        ...         result = await executor.execute(source, language="rust", stdin=test_input, timeout=2)
        ...         print(result.status, result.run and result.run.wall_ms)
    """

    def __init__(
        self,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        request_timeout: float | None = None,
        config: ConnectionConfig | None = None,
    ) -> None:
        self._connection = AsyncConnection(resolve_config(config, api_url, api_key, request_timeout))

    @property
    def config(self) -> ConnectionConfig:
        """Where the server is, and the key used to reach it."""
        return self._connection.config

    async def execute(
        self,
        code: str | None = None,
        *,
        language: str,
        **options: Unpack[messages.RunOptions],
    ) -> models.ExecuteResult:
        """Run one program and return how each stage ended.

        Args:
            code: The program's source, as one file (give this or ``files``).
            language: Its language: a name or alias from :meth:`languages` (``"python"``, ``"py"``).
            version: A version of the language, if the server has several (its default otherwise).
            files: ``{name: content}``, the entry point first; bytes are sent base64-encoded.
            stdin: What the program reads on standard input.
            args: Its command-line arguments.
            env: Extra environment variables.
            timeout: Wall-clock seconds before it is stopped (server default: 10).
            cpu_time: CPU seconds before it is stopped.
            memory_mb: Its memory limit in MiB.
            output_limit: Bytes of stdout and stderr kept (server default: 65536); beyond it
                the output is cut and the stage marked ``truncated``.
            network: Let it reach the network (default: no network at all).

        Returns:
            The language and version that ran, and its compile and run stages.

        Raises:
            InvalidArgumentError: a bad request (unknown language, both ``code`` and ``files``...);
                the message says what to fix.
            RateLimitedError: the server's queue stayed full through every retry.
            UnavailableError: no runner became free in time (503), or no server.

        Example:
            >>> result = await executor.execute(
            ...     files={"main.py": "import util", "util.py": "print(1)"}, language="python"
            ... )
            >>> result.stdout
            '1\\n'
        """
        request = messages.execute_request(language=language, code=code, **options)
        return await self._connection.api(request, messages.parse_result)

    async def languages(self) -> list[models.Language]:
        """The languages the server runs, with their versions and aliases.

        Example:
            >>> {l.language: l.version for l in await executor.languages()}
            {'python': '3.11.2', 'rust': '1.63.0', ...}
        """
        return await self._connection.api(messages.languages_request(), messages.parse_languages)

    async def aclose(self) -> None:
        """Close the connection.

        Example:
            >>> await executor.aclose()
        """
        await self._connection.aclose()


async def aexecute(
    code: str | None = None,
    *,
    language: str,
    api_url: str | None = None,
    api_key: str | None = None,
    config: ConnectionConfig | None = None,
    **options: Unpack[messages.RunOptions],
) -> models.ExecuteResult:
    """Run one program in a fresh sandbox and return its output and how it ended.

    The arguments are those of :meth:`AsyncExecutor.execute`, plus where the server is
    (``api_url``, ``api_key``, or a whole ``config``; ``SANDLOT_API_URL`` and
    ``SANDLOT_API_KEY`` otherwise).

    Example:
        >>> result = await aexecute("fn main() { println!(\\"hi\\") }", language="rust")
        >>> result.compile.status, result.stdout
        (<StageStatus.OK: 'ok'>, 'hi\\n')
    """
    async with AsyncExecutor(api_url=api_url, api_key=api_key, config=config) as executor:
        return await executor.execute(code, language=language, **options)
