"""``sandbox.files``: read, write, list and watch files in a sandbox.

Contents travel over plain HTTP ``/files``; everything else is a ``filesystem.Filesystem``
Connect call. Big files stream both ways in chunks of
:data:`~sandlot.sdk._core.filesystem.CHUNK` bytes: :meth:`AsyncFiles.write` takes a file object
or an iterator of chunks as well as ``str``/``bytes``, :meth:`AsyncFiles.upload` and
:meth:`AsyncFiles.download` copy between a local path and the sandbox, and
:meth:`AsyncFiles.stream` yields a download chunk by chunk. None of them holds a whole file.

Relative paths are relative to the user's home (``/home/user`` for the default user). Local
file reads and writes in the async SDK are plain blocking calls on small chunks, as in
``httpx``'s own file uploads.

Example:
    >>> await sbx.files.write("hello.txt", "hi")
    WriteInfo(name='hello.txt', path='/home/user/hello.txt', type=<FileType.FILE: 'file'>, metadata={})
    >>> await sbx.files.read("hello.txt")
    'hi'
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from typing import IO, Any, Self

from sandlot.sdk import exceptions
from sandlot.sdk._async.connection import (
    AsyncClosing,
    AsyncConnection,
    AsyncMessageStream,
    read_all,
)
from sandlot.sdk._core import connect, filesystem, models

__all__ = ["AsyncFileStream", "AsyncFiles", "AsyncWatchHandle"]

WriteData = str | bytes | IO[bytes] | AsyncIterable[bytes]
ProgressCallback = Callable[[int], object]


class AsyncFiles:
    """The files of one sandbox (``sandbox.files``).

    Example:
        >>> for entry in await sbx.files.list("/home/user"):
        ...     print(entry.name, entry.type.value, entry.size)
    """

    def __init__(self, connection: AsyncConnection, headers: Mapping[str, str]) -> None:
        self._connection = connection
        self._headers = dict(headers)

    # ------------------------------------------------------------------ contents

    async def read(self, path: str, *, user: str | None = None) -> str:
        """A file's contents as text (UTF-8; invalid bytes become U+FFFD).

        Raises:
            PathNotFoundError: no such file.
            InvalidArgumentError: the path is a directory.

        Example:
            >>> await sbx.files.read("/etc/hostname")
            'sandbox\\n'
        """
        return (await self.read_bytes(path, user=user)).decode("utf-8", errors="replace")

    async def read_bytes(self, path: str, *, user: str | None = None) -> bytes:
        """A file's contents as bytes.

        Example:
            >>> await sbx.files.read_bytes("/bin/true")[:4]
            b'\\x7fELF'
        """
        chunks = []
        async with self.stream(path, user=user) as stream:
            async for chunk in stream.aiter_bytes():
                chunks.append(chunk)
        return b"".join(chunks)

    def stream(self, path: str, *, user: str | None = None) -> AsyncFileStream:
        """Download a file chunk by chunk; use as a context manager.

        Example:
            >>> async with sbx.files.stream("/var/log/big.log") as stream:
            ...     async for chunk in stream.aiter_bytes():
            ...         sink.write(chunk)
        """
        return AsyncFileStream(self._connection, self._headers, filesystem.files_params(path, user=user))

    async def download(
        self,
        path: str,
        local_path: str | os.PathLike[str],
        *,
        user: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Copy a sandbox file to ``local_path``, streaming; returns the number of bytes.

        Args:
            path: The file in the sandbox.
            local_path: Where to write it on this machine (replaced if it exists).
            user: Linux user to read as.
            on_progress: Called with the bytes copied so far, after each chunk.

        Example:
            >>> await sbx.files.download("/tmp/out.tar", "out.tar")
            1048576
        """
        done = 0
        async with self.stream(path, user=user) as stream:
            with open(local_path, "wb") as sink:  # noqa: ASYNC230 - small blocking writes, see module doc
                async for chunk in stream.aiter_bytes():
                    sink.write(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done)
        return done

    async def write(
        self,
        path: str,
        data: WriteData,
        *,
        user: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> models.WriteInfo:
        """Write a file, creating parent directories; an existing file is replaced.

        Args:
            path: Where, in the sandbox.
            data: ``str`` (written as UTF-8), ``bytes``, a binary file object, or an iterator of
                ``bytes`` chunks (an async iterator in the async SDK). File objects and iterators
                are streamed.
            user: Linux user to write as (and owner of the file).
            metadata: Key/value pairs kept with the file (``EntryInfo.metadata``).

        Example:
            >>> with open("model.bin", "rb") as f:
            ...     await sbx.files.write("/tmp/model.bin", f)
        """
        params = filesystem.files_params(path, user=user)
        headers = {**filesystem.metadata_headers(metadata), "Content-Type": "application/octet-stream"}
        return (await self._post(params, headers, content=_content(data)))[0]

    async def write_many(
        self,
        files: Mapping[str, str | bytes | IO[bytes]] | Sequence[tuple[str, str | bytes | IO[bytes]]],
        *,
        user: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[models.WriteInfo]:
        """Write several files in one multipart request; returns one entry per file, in order.

        Example:
            >>> await sbx.files.write_many({"a.txt": "a", "b/c.txt": b"c"})
            [WriteInfo(name='a.txt', ...), WriteInfo(name='c.txt', ...)]
        """
        items = list(files.items()) if isinstance(files, Mapping) else list(files)
        if not items:
            return []
        parts = []
        for path, data in items:
            filesystem.check_path(path)
            body = data.encode() if isinstance(data, str) else data
            parts.append(("file", (path, body, "application/octet-stream")))
        params = filesystem.files_params(None, user=user)
        return await self._post(params, filesystem.metadata_headers(metadata), files=parts)

    async def _post(self, params: dict[str, str], headers: Mapping[str, str], **body: Any) -> list[models.WriteInfo]:
        """``POST /files`` with ``body`` (``content=`` one file, ``files=`` a multipart form)."""
        response = await self._connection.files_request(
            "POST", headers={**self._headers, **headers}, params=params, **body
        )
        return filesystem.parse_write_answer(response.status_code, response.headers, await read_all(response))

    async def upload(
        self,
        local_path: str | os.PathLike[str],
        path: str,
        *,
        user: str | None = None,
        metadata: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> models.WriteInfo:
        """Copy the local file ``local_path`` into the sandbox at ``path``, streaming.

        Example:
            >>> await sbx.files.upload("dataset.csv", "/home/user/data/dataset.csv")
        """
        with open(local_path, "rb") as source:  # noqa: ASYNC230 - small blocking reads, see module doc
            return await self.write(path, _read_chunks(source, on_progress), user=user, metadata=metadata)

    # ----------------------------------------------------------------- metadata

    async def list(self, path: str, *, depth: int = 1, user: str | None = None) -> list[models.EntryInfo]:
        """The entries of a directory, ``depth`` levels down (1: direct children).

        Example:
            >>> [e.name for e in await sbx.files.list("/home/user", depth=1)]
            ['.bashrc', '.profile']
        """
        answer = await self._rpc("ListDir", filesystem.list_request(path, depth), user=user)
        return filesystem.parse_entries(answer)

    async def exists(self, path: str, *, user: str | None = None) -> bool:
        """Whether ``path`` exists (a file, a directory or a symlink).

        Example:
            >>> await sbx.files.exists("/etc/passwd")
            True
        """
        try:
            await self.get_info(path, user=user)
        except exceptions.NotFoundError:
            return False
        return True

    async def get_info(self, path: str, *, user: str | None = None) -> models.EntryInfo:
        """What ``path`` is: type, size, mode, owner, modification time, metadata.

        Raises:
            PathNotFoundError: no such path.

        Example:
            >>> (await sbx.files.get_info("/etc/passwd")).owner
            'root'
        """
        answer = await self._rpc("Stat", {"path": filesystem.check_path(path)}, user=user)
        return filesystem.parse_entry(answer.get("entry") or {})

    stat = get_info

    async def make_dir(self, path: str, *, user: str | None = None) -> bool:
        """Create a directory and its missing parents. Returns False if it already existed.

        Example:
            >>> await sbx.files.make_dir("/tmp/a/b")
            True
        """
        try:
            await self._rpc("MakeDir", {"path": filesystem.check_path(path)}, user=user)
        except exceptions.AlreadyExistsError:
            return False
        return True

    async def remove(self, path: str, *, user: str | None = None) -> None:
        """Remove a file, or a directory with everything in it.

        Example:
            >>> await sbx.files.remove("/tmp/a")
        """
        await self._rpc("Remove", {"path": filesystem.check_path(path)}, user=user)

    async def rename(self, old_path: str, new_path: str, *, user: str | None = None) -> models.EntryInfo:
        """Move ``old_path`` to ``new_path``; returns the entry at its new place.

        Example:
            >>> (await sbx.files.rename("/tmp/a", "/tmp/b")).path
            '/tmp/b'
        """
        answer = await self._rpc("Move", filesystem.move_request(old_path, new_path), user=user)
        return filesystem.parse_entry(answer.get("entry") or {})

    def watch(
        self,
        path: str,
        *,
        recursive: bool = False,
        include_entry: bool = False,
        timeout: float | None = None,
        user: str | None = None,
    ) -> AsyncWatchHandle:
        """Watch a directory for changes; use as a context manager and iterate the events.

        The watch is in place when the ``with`` block is entered: changes made inside the block
        are reported, none are lost between entering and the first iteration.

        Args:
            path: The directory.
            recursive: Also watch its subdirectories.
            include_entry: Attach the changed entry's :class:`EntryInfo` to each event.
            timeout: Stop after this many seconds (iteration then simply ends); None: never.
            user: Linux user to watch as.

        Example:
            >>> async with sbx.files.watch("/tmp", timeout=10) as watch:
            ...     await sbx.files.write("/tmp/x", "1")
            ...     async for event in watch:
            ...         print(event.type, event.name)
            ...         break
            WatchEventType.CREATE x
        """
        request = filesystem.watch_request(path, recursive=recursive, include_entry=include_entry)
        headers = {**self._headers, **connect.basic_auth(user)}
        return AsyncWatchHandle(self._connection, headers, request, timeout)

    async def _rpc(self, method: str, message: dict[str, Any], *, user: str | None) -> dict[str, Any]:
        return await self._connection.rpc(
            filesystem.path(method),
            message,
            headers={**self._headers, **connect.basic_auth(user)},
            context="filesystem",
        )


class AsyncFileStream(AsyncClosing):
    """A download in progress: iterate :meth:`aiter_bytes` inside ``async with``.

    Example:
        >>> async with sbx.files.stream("/tmp/big") as stream:
        ...     total = 0
        ...     async for chunk in stream.aiter_bytes():
        ...         total += len(chunk)
    """

    def __init__(self, connection: AsyncConnection, headers: Mapping[str, str], params: dict[str, str]) -> None:
        self._connection = connection
        self._headers = headers
        self._params = params
        self._response: Any = None

    async def __aenter__(self) -> Self:
        response = await self._connection.files_request("GET", headers=self._headers, params=self._params)
        if response.status_code != 200:
            filesystem.check_files_status(response.status_code, response.headers, await read_all(response))
        self._response = response
        return self

    @property
    def size(self) -> int | None:
        """The file's size if the server announced it (``Content-Length``)."""
        length = self._response.headers.get("content-length") if self._response is not None else None
        return int(length) if length and length.isdigit() else None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The file's contents in chunks, in order."""
        if self._response is None:
            raise exceptions.SandlotError("enter the stream with a 'with' block first")
        async for chunk in self._response.aiter_bytes(filesystem.CHUNK):
            yield chunk

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()


class AsyncWatchHandle(AsyncClosing):
    """A watch on a directory: iterate it for :class:`WatchEvent` s; close it to stop.

    Example:
        >>> async with sbx.files.watch("/tmp", recursive=True) as watch:
        ...     async for event in watch:
        ...         if event.type is WatchEventType.REMOVE:
        ...             break
    """

    def __init__(
        self, connection: AsyncConnection, headers: Mapping[str, str], request: dict[str, Any], timeout: float | None
    ) -> None:
        self._connection = connection
        self._headers = headers
        self._request = request
        self._timeout = timeout
        self._stream: AsyncMessageStream | None = None
        self._closed = False

    async def start(self) -> None:
        """Put the watch in place (``with`` does this); returns once the server confirmed it."""
        if self._stream is not None:
            return
        self._stream = await self._connection.stream(
            filesystem.path("WatchDir"),
            self._request,
            headers=self._headers,
            timeout=self._timeout,
            context="filesystem",
        )
        first = await self._stream.first("the watch ended before it started")
        if filesystem.parse_watch_message(first) != "start":
            await self._stream.aclose()
            raise exceptions.ProtocolError(f"expected the watch's start event first, got {first!r}")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    def __aiter__(self) -> AsyncIterator[models.WatchEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[models.WatchEvent]:
        await self.start()
        assert self._stream is not None
        try:
            async for message in self._stream:
                event = filesystem.parse_watch_message(message)
                if isinstance(event, models.WatchEvent):
                    yield event
        except exceptions.TimeoutError:
            return  # the watch's own deadline: the end of the events, not a failure
        except exceptions.SandlotError:
            if self._closed:
                return
            raise

    async def aclose(self) -> None:
        """Stop watching."""
        self._closed = True
        if self._stream is not None:
            await self._stream.aclose()


def _content(data: WriteData) -> Any:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "read"):
        return _read_chunks(data, None)  # type: ignore[arg-type]
    if hasattr(data, "__aiter__"):
        return data
    raise exceptions.InvalidArgumentError(f"cannot write {type(data).__name__}: use str, bytes, a file or chunks")


async def _read_chunks(source: IO[bytes], on_progress: ProgressCallback | None) -> AsyncIterator[bytes]:
    done = 0
    while True:
        chunk = source.read(filesystem.CHUNK)
        if not chunk:
            return
        if isinstance(chunk, str):
            chunk = chunk.encode()
        done += len(chunk)
        yield chunk
        if on_progress is not None:
            on_progress(done)
