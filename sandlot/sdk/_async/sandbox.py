"""``AsyncSandbox``: create, connect to, inspect and kill sandboxes.

Both SDK flavours come from one source: the async one, AsyncSandbox, is written by hand, and
scripts/unasync.py generates the sync one, Sandbox, from it, so every fix is made once. A
sandbox object holds one HTTP client for both planes; ``commands``, ``files`` and ``pty`` share it.

Configuration comes from arguments first, then ``SANDLOT_API_URL`` and ``SANDLOT_API_KEY``
(see :class:`~sandlot.sdk._core.config.ConnectionConfig`). ``kill``, ``set_timeout``,
``get_info``, ``get_metrics``, ``pause``, ``resume``, ``fork``, ``restart`` and the snapshot
calls work on an instance (``await sbx.kill()``) and on the class with an id
(``await AsyncSandbox.kill("id")``), which needs no connect first.

Pause keeps memory: a paused sandbox's processes go on where they were when it is resumed
(``resume``, ``connect``, or the first sandbox-plane request of one created with
``auto_resume``). Streams attached to its processes (a ``commands.run`` still waiting, a PTY's
output) end at the pause; the processes do not. ``fork`` copies a running sandbox, memory and
files, into independent sandboxes; ``create_snapshot`` keeps a copy that ``create`` takes as a
``template``.

Example:
    >>> async with await AsyncSandbox.create(metadata={"job": "42"}) as sbx:
    ...     result = await sbx.commands.run("python3 -c 'print(6 * 7)'")
    ...     print(result.stdout)
    42
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, Unpack

from sandlot.sdk import exceptions
from sandlot.sdk._async.commands import AsyncCommands
from sandlot.sdk._async.connection import AsyncClosing, AsyncConnection
from sandlot.sdk._async.files import AsyncFiles
from sandlot.sdk._async.pty import AsyncPty
from sandlot.sdk._core import api, models
from sandlot.sdk._core.config import ConnectionConfig, resolve_config
from sandlot.sdk._core.hybrid import Takes, hybrid, split_target

__all__ = ["AsyncSandbox"]

T = TypeVar("T")


async def _all_pages(
    connection: AsyncConnection,
    request: Callable[..., api.Request],
    parse: Callable[[int, Mapping[str, str], bytes], tuple[list[T], str | None]],
    limit: int | None,
) -> list[T]:
    """Follow a list's pages (``request(limit=, next_token=)``) up to ``limit`` items in all.

    The server may answer fewer than asked on a page, so each page asks for what is still
    missing, and an empty page ends the walk even when it carries a token.
    """
    found: list[T] = []
    token = None
    while limit is None or len(found) < limit:
        missing = None if limit is None else limit - len(found)
        page, token = await connection.api(request(limit=missing, next_token=token), parse)
        found.extend(page)
        if not token or not page:
            break
    return found if limit is None else found[:limit]


class AsyncSandbox(AsyncClosing):
    """A running sandbox: its processes (``commands``, ``pty``) and its files (``files``).

    Get one from :meth:`create`, :meth:`connect` or :meth:`from_env`, not from the constructor.
    Used as a context manager it is killed at the end of the block; :meth:`aclose` only closes
    the connection and leaves the sandbox running.

    Attributes:
        sandbox_id: The sandbox's id.
        template_id: The template it runs.
        commands: Run commands (:class:`AsyncCommands`).
        files: Read and write files (:class:`AsyncFiles`).
        pty: Interactive terminals (:class:`AsyncPty`).

    Example:
        >>> sbx = await AsyncSandbox.create(timeout=600)
        >>> await sbx.files.write("/tmp/x", "1")
        >>> await sbx.kill()
        True
    """

    def __init__(self, connection: AsyncConnection, handle: api.SandboxHandle) -> None:
        self._connection = connection
        self._handle = handle
        self.sandbox_id = handle.sandbox_id
        self.template_id = handle.template_id
        headers = ConnectionConfig.sandbox_headers(handle.sandbox_id, handle.access_token)
        self.commands = AsyncCommands(connection, headers)
        self.files = AsyncFiles(connection, headers)
        self.pty = AsyncPty(connection, self.commands)

    def _adopt(self, handle: api.SandboxHandle) -> None:
        """Take the handle a resume or restart answered: its token opens the sandbox plane now."""
        if handle.access_token != self._handle.access_token:
            headers = ConnectionConfig.sandbox_headers(handle.sandbox_id, handle.access_token)
            self.commands._headers = dict(headers)
            self.files._headers = dict(headers)
        self._handle = handle

    def __repr__(self) -> str:
        return f"<AsyncSandbox {self.sandbox_id} template={self.template_id}>"

    @property
    def envd_version(self) -> str:
        """The sandbox-plane protocol version the server reports."""
        return self._handle.envd_version

    @property
    def access_token(self) -> str | None:
        """The sandbox's own access token (None for a sandbox created with ``secure=False``)."""
        return self._handle.access_token

    @property
    def config(self) -> ConnectionConfig:
        """Where this sandbox's server is, and the key used to reach it."""
        return self._connection.config

    # ---------------------------------------------------------------------- getting one

    @classmethod
    async def create(
        cls,
        template: str | None = None,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        request_timeout: float | None = None,
        config: ConnectionConfig | None = None,
        **options: Unpack[api.SandboxOptions],
    ) -> AsyncSandbox:
        """Create a sandbox and return it running.

        Args:
            template: Template name (default ``base``), or a snapshot's id (``name:tag``, or
                ``name`` for its newest version): a memory snapshot's processes go on where
                they were (``boot == "fork"``), a filesystem one boots clean on its files.
            timeout: Seconds until the server ends the sandbox (server default: 300).
            metadata: Your key/value labels, for ``list(metadata=...)``.
            envs: Environment variables of every process in it.
            secure: False creates it without an access token (anyone who knows the id can reach it).
            allow_internet_access: Let it reach the internet (the server's default otherwise).
            auto_pause: At its timeout, pause it (memory kept) instead of killing it.
            auto_resume: Resume it when paused on its first sandbox-plane request
                (a command, a file read) instead of answering "not running".
            idle_timeout: Seconds with no request on either plane and no running command
                after which it gets its timeout action (killed, or paused with ``auto_pause``);
                None or 0: off.
            api_url: The server; default ``$SANDLOT_API_URL`` or ``http://127.0.0.1:3000``.
            api_key: The team API key; default ``$SANDLOT_API_KEY``.
            request_timeout: Seconds for one request (default 60; 0: none).
            config: A complete connection config; overrides the three above.

        Raises:
            AuthenticationError: no key, or a wrong one.
            TemplateNotFoundError: no template, or snapshot, of that name.
            RateLimitedError: the team's sandbox quota is used up.

        Example:
            >>> sbx = await AsyncSandbox.create("base", timeout=120, envs={"MODE": "test"})
            >>> warm = await AsyncSandbox.create("warm:v1", auto_pause=True, auto_resume=True)
        """
        connection_config = resolve_config(config, api_url, api_key, request_timeout)
        return await cls._open(connection_config, api.create_sandbox(template=template, **options), api.parse_created)

    @classmethod
    async def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> AsyncSandbox:
        """Create a sandbox on the server the environment names.

        Reads ``SANDLOT_API_URL`` (default ``http://127.0.0.1:3000``) and ``SANDLOT_API_KEY`` from
        ``environ`` (``os.environ`` if None); other arguments go to :meth:`create`.

        Example:
            >>> sbx = await AsyncSandbox.from_env({"SANDLOT_API_KEY": key}, template="base")
        """
        config = ConnectionConfig.from_env(environ)
        return await cls.create(config=config, **kwargs)

    @classmethod
    async def connect(
        cls,
        sandbox_id: str,
        *,
        timeout: int | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        request_timeout: float | None = None,
        config: ConnectionConfig | None = None,
    ) -> AsyncSandbox:
        """Connect to an existing sandbox, resuming it (memory and all) if it was paused.

        Args:
            sandbox_id: Its id.
            timeout: Make it live at least this many more seconds; a connect never shortens it.
                A paused sandbox resumed by the connect ends this many seconds from now (the
                server's default, 300, when None).

        Raises:
            SandboxNotFoundError: no such sandbox in this team.

        Example:
            >>> sbx = await AsyncSandbox.connect("sbx-1f2e")
        """
        connection_config = resolve_config(config, api_url, api_key, request_timeout)
        return await cls._open(connection_config, api.connect_sandbox(sandbox_id, timeout=timeout), api.parse_handle)

    @classmethod
    async def _open(
        cls,
        config: ConnectionConfig,
        request: api.Request,
        parse: Callable[[int, Mapping[str, str], bytes], api.SandboxHandle],
    ) -> AsyncSandbox:
        """A sandbox on a connection of its own, from the handle ``request`` is answered with."""
        connection = AsyncConnection(config)
        try:
            handle = await connection.api(request, parse)
        except BaseException:
            await connection.aclose()
            raise
        return cls(connection, handle)

    @classmethod
    async def list(
        cls,
        *,
        metadata: Mapping[str, str] | None = None,
        state: Sequence[str] | str | None = None,
        template: str | None = None,
        started_after: datetime.datetime | None = None,
        order: str | None = None,
        limit: int | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        config: ConnectionConfig | None = None,
    ) -> list[models.SandboxInfo]:
        """The team's sandboxes, following the server's pages up to ``limit`` in all.

        Args:
            metadata: Only sandboxes whose metadata has all these pairs.
            state: ``"running"``, ``"paused"``, or both (the default).
            template: Only sandboxes of this template.
            started_after: Only sandboxes started after this moment.
            order: ``"asc"`` or ``"desc"`` by start time.
            limit: At most this many (default: all).

        Example:
            >>> [s.sandbox_id for s in await AsyncSandbox.list(metadata={"job": "42"})]
            ['sbx-1f2e']
        """
        request = functools.partial(
            api.list_sandboxes,
            metadata=metadata,
            state=state,
            template=template,
            started_after=started_after,
            order=order,
        )
        async with AsyncConnection(resolve_config(config, api_url, api_key, None)) as connection:
            return await _all_pages(connection, request, api.parse_list, limit)

    # ------------------------------------------------------- instance-or-class operations

    @classmethod
    async def _detached(
        cls,
        method: Callable[..., Any],
        takes: Takes,
        /,
        *args: Any,
        api_url: str | None = None,
        api_key: str | None = None,
        config: ConnectionConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``method`` for a sandbox known by id only, on a connection opened for this call.

        The class form of every :class:`~sandlot.sdk._core.hybrid.hybrid` operation comes here:
        the stand-in sandbox has only the id and the connection, which is all they use.
        """
        sandbox_id, args, kwargs = split_target(takes, args, kwargs)
        async with AsyncConnection(resolve_config(config, api_url, api_key, None)) as connection:
            stand_in = cls(connection, api.SandboxHandle(sandbox_id=sandbox_id or "", template_id="", envd_version=""))
            return await method(stand_in, *args, **kwargs)

    @hybrid
    async def kill(self) -> bool:
        """Kill the sandbox now. Returns False if it did not exist (any more).

        Example:
            >>> await sbx.kill()
            True
            >>> await AsyncSandbox.kill("sbx-1f2e")
            False
        """
        return await self._connection.api(api.kill_sandbox(self.sandbox_id), api.parse_kill)

    @hybrid
    async def set_timeout(self, timeout: int) -> None:
        """End the sandbox ``timeout`` seconds from now (shorter or longer than before).

        Example:
            >>> await sbx.set_timeout(3600)
            >>> await AsyncSandbox.set_timeout("sbx-1f2e", 60)
        """
        await self._connection.api(api.set_timeout(self.sandbox_id, timeout), api.parse_empty)

    @hybrid
    async def get_info(self) -> models.SandboxInfo:
        """The sandbox as the control plane sees it: state, template, times, metadata, limits.

        Example:
            >>> (await sbx.get_info()).state
            'running'
        """
        return await self._connection.api(api.get_sandbox(self.sandbox_id), api.parse_info)

    @hybrid
    async def get_metrics(
        self, *, start: datetime.datetime | None = None, end: datetime.datetime | None = None
    ) -> builtins.list[models.SandboxMetrics]:
        """CPU, memory and disk samples of the sandbox, oldest first.

        Example:
            >>> (await sbx.get_metrics())[-1].mem_used
            31457280
        """
        return await self._connection.api(api.get_metrics(self.sandbox_id, start=start, end=end), api.parse_metrics)

    # ------------------------------------------------------------ pause, resume, fork, restart

    @hybrid
    async def pause(self) -> bool:
        """Pause the sandbox, keeping its memory: its processes stop and go on after a resume.

        A paused sandbox costs disk only and has no timer: it is kept until it is resumed or
        killed. Streams attached to its processes end now; the processes do not.

        Returns:
            True if it was paused now, False if it was paused already.

        Raises:
            SandboxNotFoundError: no such sandbox.

        Example:
            >>> await sbx.pause()
            True
            >>> await AsyncSandbox.pause(sbx.sandbox_id)
            False
        """
        return await self._connection.api(api.pause_sandbox(self.sandbox_id), api.parse_pause)

    @hybrid
    async def resume(self, timeout: int | None = None) -> bool:
        """Resume a paused sandbox: every process goes on where it was, and its files are there.

        Args:
            timeout: Seconds it lives from now (the server's default, 300, when None).

        Returns:
            True if it was paused and is running now, False if it was running already (its
            timeout is then left as it was).

        Example:
            >>> await sbx.pause()
            >>> await sbx.resume(timeout=600)
            True
            >>> await AsyncSandbox.resume("sbx-1f2e")
            False
        """
        handle = await self._connection.api(api.resume_sandbox(self.sandbox_id, timeout=timeout), api.parse_resume)
        if handle is not None:
            self._adopt(handle)
        return handle is not None

    @hybrid
    async def fork(self, count: int = 1, *, timeout: int | None = None) -> builtins.list[AsyncSandbox]:
        """Copy the running sandbox, memory and files, into ``count`` independent sandboxes.

        The original is frozen for a moment and goes on unchanged. Each copy's processes go on
        from the original's state; files written later in one are seen by no other. Copies
        have the original's template, limits, network policy, environment and metadata, plus
        ``forkedFrom``; network connections the original's processes had open are not carried
        over (each copy has its own address). Every copy is made, or none.

        Args:
            count: How many copies (the server allows 1 to 20).
            timeout: Seconds each copy lives (the server's default, 300, when None).

        Returns:
            The copies, running, each to be killed (or used as a context manager) on its own.

        Raises:
            AlreadyExistsError: the sandbox is paused (409: resume it first).

        Example:
            >>> children = await sbx.fork(3, timeout=120)
            >>> [await c.commands.run("cat /tmp/state") for c in children]
            >>> copies = await AsyncSandbox.fork("sbx-1f2e")
        """
        connection = self._connection
        answers = await connection.api(api.fork_sandbox(self.sandbox_id, count=count, timeout=timeout), api.parse_fork)
        handles = [a for a in answers if isinstance(a, api.SandboxHandle)]
        failures = [a for a in answers if not isinstance(a, api.SandboxHandle)]
        if failures:
            # All or nothing, as sandlot's own server forks: copies the caller never sees
            # would run (and cost) until their timeout.
            for handle in handles:
                with contextlib.suppress(exceptions.SandlotError):
                    await connection.api(api.kill_sandbox(handle.sandbox_id), api.parse_kill)
            raise failures[0]
        # Each copy gets a connection of its own: closing one must not close its siblings.
        return [type(self)(AsyncConnection(connection.config), handle) for handle in handles]

    @hybrid
    async def restart(self, timeout: int | None = None) -> None:
        """Restart the sandbox from its files: every process ends and it boots clean.

        Running or paused, it comes back running, with the template's current build and the
        server's current init (to pick up an agent or template update), its files as they were.

        Args:
            timeout: Seconds it lives from now (the server's default, 300, when None).

        Example:
            >>> await sbx.restart()
            >>> (await sbx.get_info()).boot
            'clean'
        """
        handle = await self._connection.api(api.restart_sandbox(self.sandbox_id, timeout=timeout), api.parse_handle)
        self._adopt(handle)

    # ---------------------------------------------------------------------- snapshots

    @hybrid
    async def create_snapshot(self, name: str | None = None, *, memory: bool = True) -> models.SnapshotInfo:
        """Snapshot the running sandbox; ``create(template=snapshot.snapshot_id)`` starts from it.

        The sandbox is frozen for a moment and goes on running. Each snapshot of a name gets the
        next tag (``name:v1``, ``name:v2``...). Sandboxes made from a snapshot own copies of
        everything: deleting the snapshot later never touches them.

        Args:
            name: The snapshot's name (the server picks ``snap-<random>`` when None).
            memory: True keeps the processes' memory (a sandbox made from it goes on where this
                one was); False keeps only the files (one made from it boots clean).

        Raises:
            AlreadyExistsError: the sandbox is paused (409).

        Example:
            >>> snap = await sbx.create_snapshot("deps-installed")
            >>> snap.snapshot_id
            'deps-installed:v1'
            >>> twin = await AsyncSandbox.create(snap.snapshot_id)
        """
        request = api.create_snapshot(self.sandbox_id, name=name, memory=memory)
        return await self._connection.api(request, api.parse_snapshot)

    @hybrid.taking("optional_sandbox_id")
    async def list_snapshots(
        self, *, name: str | None = None, limit: int | None = None
    ) -> builtins.list[models.SnapshotInfo]:
        """The team's snapshots, following the server's pages up to ``limit`` in all.

        On an instance, the snapshots taken of this sandbox; on the class, every snapshot of
        the team, or those of a sandbox id given first; ``name`` keeps those of that name.

        Example:
            >>> [s.snapshot_id for s in await sbx.list_snapshots()]
            ['deps-installed:v1', 'deps-installed:v2']
            >>> await AsyncSandbox.list_snapshots(name="deps-installed", limit=10)
        """
        request = functools.partial(api.list_snapshots, sandbox_id=self.sandbox_id or None, name=name)
        return await _all_pages(self._connection, request, api.parse_snapshot_list, limit)

    @hybrid.taking("nothing")
    async def delete_snapshot(self, snapshot_id: str) -> bool:
        """Delete a snapshot: ``name:tag`` deletes that version, a bare ``name`` every version.

        Sandboxes made from it are not touched.

        Returns:
            True if it was deleted, False if there was no such snapshot.

        Example:
            >>> await AsyncSandbox.delete_snapshot("deps-installed:v1")
            True
        """
        return await self._connection.api(api.delete_snapshot(snapshot_id), api.parse_delete_snapshot)

    # ---------------------------------------------------------------------- lifetime

    async def is_running(self) -> bool:
        """Whether the sandbox is still running (asks the control plane).

        Example:
            >>> await sbx.is_running()
            True
        """
        try:
            return (await self.get_info()).state == "running"
        except exceptions.NotFoundError:
            return False

    async def aclose(self) -> None:
        """Close this object's connection; the sandbox goes on running until its timeout.

        Example:
            >>> await sbx.aclose()
        """
        await self._connection.aclose()

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.kill()
        finally:
            await self.aclose()
