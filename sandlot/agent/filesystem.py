"""The ``filesystem.Filesystem`` service (envd-compatible) on the sandbox's root as the host sees it.

Every path goes through `sandlot.agent.rootfs.RootFS` (``openat2`` with ``RESOLVE_IN_ROOT``), so
nothing a sandbox plants can point the agent at a host file. Relative paths are relative to the
calling user's home; what the API creates is owned by that user inside the sandbox.

Choices where E2B's contract is silent:

* A symlink is reported as ``type: FILE_TYPE_SYMLINK`` with ``isSymlink: true`` and its
  ``symlinkTarget``, so both SDK generations show it as a link (docs/e2b-wire.md 6.1).
* `MakeDir` and `Move` create missing parent directories; `Remove` removes directories
  recursively (with ``shutil.rmtree(dir_fd=...)``, which never follows links).
* `ListDir` never descends through symlinks, and stops at `MAX_ENTRIES` entries.
* Watchers (inotify) hold no descriptor of the root, so they never keep a destroyed
  sandbox's mount busy; polling watchers not polled for `WATCHER_IDLE` seconds are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import os
import posixpath
import secrets
import shutil
import stat as stats
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from sandlot.agent import inotify, rootfs, rpc
from sandlot.runtime import models

__all__ = ["KEEPALIVE", "FilesystemService", "entry_info", "fs_errors", "open_root"]

KEEPALIVE: dict[str, Any] = {"keepalive": {}}
MAX_ENTRIES = 100_000
MAX_DEPTH = 64
MAX_WATCHERS = 64
"""Polling watchers per sandbox."""
MAX_PENDING = 10_000
"""Events a polling watcher keeps between two polls; older ones are dropped."""
WATCHER_IDLE = 600.0
XATTR_PREFIX = "user.e2b."
_T = TypeVar("_T")

_WATCH_MASK = (
    inotify.IN_CREATE
    | inotify.IN_MODIFY
    | inotify.IN_CLOSE_WRITE
    | inotify.IN_DELETE
    | inotify.IN_DELETE_SELF
    | inotify.IN_MOVED_FROM
    | inotify.IN_MOVED_TO
    | inotify.IN_MOVE_SELF
    | inotify.IN_ATTRIB
    | inotify.IN_ONLYDIR
    | inotify.IN_EXCL_UNLINK
)


@contextlib.contextmanager
def fs_errors(path: str) -> Iterator[None]:
    """Translate OS errors on ``path`` into the agent's, with E2B-like messages."""
    try:
        yield
    except rootfs.UnknownUser as exc:
        raise rpc.InvalidArgument(str(exc)) from exc
    except FileNotFoundError as exc:
        raise rpc.NotFound(f"path '{path}' does not exist") from exc
    except FileExistsError as exc:
        raise rpc.AlreadyExists(f"path '{path}' already exists") from exc
    except NotADirectoryError as exc:
        raise rpc.InvalidArgument(f"path '{path}' is not a directory") from exc
    except IsADirectoryError as exc:
        raise rpc.InvalidArgument(f"path '{path}' is a directory") from exc
    except PermissionError as exc:
        raise rpc.PermissionDenied(f"permission denied on '{path}'") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise rpc.ResourceExhausted(f"not enough disk space to write '{path}'") from exc
        if exc.errno in (
            errno.ELOOP,
            errno.EXDEV,
            errno.ENAMETOOLONG,
            errno.EINVAL,
            errno.ENOTEMPTY,
        ):
            raise rpc.InvalidArgument(f"'{path}': {exc.strerror}") from exc
        raise rpc.Internal(f"'{path}': {exc.strerror}") from exc


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _file_type(mode: int) -> str:
    if stats.S_ISDIR(mode):
        return "FILE_TYPE_DIRECTORY"
    if stats.S_ISLNK(mode):
        return "FILE_TYPE_SYMLINK"
    return "FILE_TYPE_FILE"


def read_metadata(fd: int) -> dict[str, str]:
    """The ``user.e2b.*`` xattrs of the file an O_PATH ``fd`` holds."""
    link = f"/proc/self/fd/{fd}"
    try:
        names = os.listxattr(link)
    except OSError:
        return {}
    out = {}
    for name in names:
        if name.startswith(XATTR_PREFIX):
            with contextlib.suppress(OSError):
                out[name[len(XATTR_PREFIX) :]] = os.getxattr(link, name).decode("utf-8", "replace")
    return out


def entry_info(root: rootfs.RootFS, path: str, st: os.stat_result | None = None) -> dict[str, Any]:
    """The EntryInfo of ``path`` (sandbox-absolute), not following a final symlink."""
    if st is None:
        st = root.lstat(path)
    info: dict[str, Any] = {
        "name": posixpath.basename(path) or "/",
        "type": _file_type(st.st_mode),
        "path": path,
        "size": str(st.st_size),
        "mode": stats.S_IMODE(st.st_mode),
        "permissions": stats.filemode(st.st_mode),
        "owner": root.owner_name(st.st_uid),
        "group": root.group_name(st.st_gid),
        "modifiedTime": _rfc3339(st.st_mtime),
    }
    if stats.S_ISLNK(st.st_mode):
        info["isSymlink"] = True
        with contextlib.suppress(OSError):
            info["symlinkTarget"] = root.readlink(path)
    else:
        try:
            pfd, name = root.parent(path) if path != "/" else (os.dup(root.fd), ".")
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=pfd)
            finally:
                os.close(pfd)
            try:
                metadata = read_metadata(fd)
            finally:
                os.close(fd)
        except OSError:
            metadata = {}
        if metadata:
            info["metadata"] = metadata
    return info


async def open_root(call: rpc.Call) -> rootfs.RootFS:
    try:
        return rootfs.RootFS(call.target.filesystem)
    except OSError as exc:
        raise rpc.Unavailable(f"The sandbox was not found (its root is gone: {exc.strerror})") from exc


async def _in_thread(call: rpc.Call, fn: Callable[[rootfs.RootFS], _T]) -> _T:
    """Run ``fn(root)`` in a worker thread with the sandbox's root open."""
    root = await open_root(call)

    def run() -> _T:
        with root:
            return fn(root)

    return await asyncio.to_thread(run)


def _path(root: rootfs.RootFS, call: rpc.Call, raw: str | None, field: str = "path") -> str:
    if raw is None or raw == "":
        raise rpc.InvalidArgument(f"{field} must not be empty")
    with fs_errors(raw):
        home = root.user(call.user).home
    try:
        return root.absolute(raw, home)
    except ValueError as exc:
        raise rpc.InvalidArgument(str(exc)) from None


class FilesystemService:
    """One per app; holds the polling watchers, keyed by sandbox and watcher id."""

    def __init__(self) -> None:
        self._watchers: dict[tuple[str, str], _Watcher] = {}

    # -- unary ---------------------------------------------------------------------------

    async def stat(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")

        def run(root: rootfs.RootFS) -> dict[str, Any]:
            path = _path(root, call, raw)
            with fs_errors(path):
                return {"entry": entry_info(root, path)}

        return await _in_thread(call, run)

    async def make_dir(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")

        def run(root: rootfs.RootFS) -> dict[str, Any]:
            path = _path(root, call, raw)
            with fs_errors(path):
                user = root.user(call.user)
                try:
                    st = root.lstat(path)
                except FileNotFoundError:
                    pass
                else:
                    kind = "directory" if stats.S_ISDIR(st.st_mode) else "file"
                    raise rpc.AlreadyExists(f"{kind} '{path}' already exists")
                root.make_dirs(path, user, exist_ok=False)
                return {"entry": entry_info(root, path)}

        return await _in_thread(call, run)

    async def move(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw_source, raw_dest = (
            rpc.get_str(message, "source"),
            rpc.get_str(message, "destination"),
        )

        def run(root: rootfs.RootFS) -> dict[str, Any]:
            source = _path(root, call, raw_source, "source")
            dest = _path(root, call, raw_dest, "destination")
            if source == "/" or dest == "/":
                raise rpc.InvalidArgument("the root directory cannot be moved or replaced")
            with fs_errors(source):
                root.lstat(source)
            with fs_errors(dest):
                root.make_dirs(posixpath.dirname(dest), root.user(call.user))
                sfd, sname = root.parent(source)
                try:
                    dfd, dname = root.parent(dest)
                    try:
                        os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                    finally:
                        os.close(dfd)
                finally:
                    os.close(sfd)
                return {"entry": entry_info(root, dest)}

        return await _in_thread(call, run)

    async def list_dir(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")
        depth = min(max(rpc.get_int(message, "depth") or 1, 1), MAX_DEPTH)

        def run(root: rootfs.RootFS) -> dict[str, Any]:
            path = _path(root, call, raw)
            entries: list[dict[str, Any]] = []
            with fs_errors(path):
                fd = root.open(path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    _walk(root, fd, path, depth, entries)
                finally:
                    os.close(fd)
            return {"entries": entries}

        return await _in_thread(call, run)

    async def remove(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")

        def run(root: rootfs.RootFS) -> dict[str, Any]:
            path = _path(root, call, raw)
            if path == "/":
                raise rpc.InvalidArgument("the root directory cannot be removed")
            with fs_errors(path):
                pfd, name = root.parent(path)
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    if stats.S_ISDIR(st.st_mode):
                        shutil.rmtree(name, dir_fd=pfd)
                    else:
                        os.unlink(name, dir_fd=pfd)
                finally:
                    os.close(pfd)
            return {}

        return await _in_thread(call, run)

    # -- watching ------------------------------------------------------------------------

    async def _watcher(
        self,
        call: rpc.Call,
        message: dict[str, Any],
        sink: Callable[[dict[str, Any]], None],
    ) -> _Watcher:
        raw = rpc.get_str(message, "path")
        recursive = bool(rpc.get_bool(message, "recursive"))
        include_entry = bool(rpc.get_bool(message, "includeEntry"))
        fs = call.target.filesystem

        def run(root: rootfs.RootFS) -> _Watcher:
            path = _path(root, call, raw)
            with fs_errors(path):
                fd = root.open(path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    return _Watcher(fs, path, fd, recursive, include_entry, sink)
                finally:
                    os.close(fd)

        watcher = await _in_thread(call, run)
        watcher.attach(asyncio.get_running_loop())
        return watcher

    async def watch_dir(self, call: rpc.Call, message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=MAX_PENDING)

        def sink(event: dict[str, Any]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

        watcher = await self._watcher(call, message, sink)
        try:
            yield {"start": {}}
            while True:
                event = await queue.get()
                call.target.touch()
                yield {"filesystem": event}
        finally:
            watcher.close()

    async def create_watcher(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        sid = call.target.sandbox_id
        self._expire()
        if sum(1 for key in self._watchers if key[0] == sid) >= MAX_WATCHERS:
            raise rpc.ResourceExhausted(f"a sandbox may have at most {MAX_WATCHERS} watchers")
        pending: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_PENDING)
        watcher = await self._watcher(call, message, pending.append)
        watcher.pending = pending
        watcher_id = secrets.token_hex(8)
        self._watchers[(sid, watcher_id)] = watcher
        return {"watcherId": watcher_id}

    def _get(self, call: rpc.Call, message: dict[str, Any]) -> tuple[tuple[str, str], _Watcher]:
        key = (call.target.sandbox_id, rpc.get_str(message, "watcherId") or "")
        watcher = self._watchers.get(key)
        if watcher is None:
            raise rpc.NotFound(f"watcher {key[1]!r} not found")
        return key, watcher

    async def get_watcher_events(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        _, watcher = self._get(call, message)
        watcher.polled = asyncio.get_running_loop().time()
        events = list(watcher.pending)
        watcher.pending.clear()
        return {"events": events}

    async def remove_watcher(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        key, watcher = self._get(call, message)
        del self._watchers[key]
        watcher.close()
        return {}

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        for key, watcher in list(self._watchers.items()):
            if now - watcher.polled > WATCHER_IDLE:
                del self._watchers[key]
                watcher.close()

    def close(self) -> None:
        for watcher in self._watchers.values():
            watcher.close()
        self._watchers.clear()


def _walk(root: rootfs.RootFS, fd: int, path: str, depth: int, out: list[dict[str, Any]]) -> None:
    with os.scandir(fd) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        if len(out) >= MAX_ENTRIES:
            raise rpc.ResourceExhausted(f"the listing is over {MAX_ENTRIES} entries: ask for a smaller depth")
        child_path = posixpath.join(path, child.name)
        try:
            st = child.stat(follow_symlinks=False)
            out.append(entry_info(root, child_path, st))
        except FileNotFoundError:
            continue  # gone while we listed
        if depth > 1 and stats.S_ISDIR(st.st_mode):
            try:
                sub = os.open(
                    child.name,
                    os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=fd,
                )
            except OSError:
                continue
            try:
                _walk(root, sub, child_path, depth - 1, out)
            finally:
                os.close(sub)


@dataclasses.dataclass
class _Watcher:
    """An inotify watch of one directory (and, if recursive, of every directory below it)."""

    fs: models.HostFilesystem
    path: str
    fd: dataclasses.InitVar[int]
    recursive: bool
    include_entry: bool
    sink: Callable[[dict[str, Any]], None]
    pending: collections.deque[dict[str, Any]] = dataclasses.field(default_factory=collections.deque)
    polled: float = 0.0

    def __post_init__(self, fd: int) -> None:
        self._ino = inotify.Inotify()
        self._dirs: dict[int, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._add(fd, "")
        except BaseException:
            self._ino.close()
            raise

    def _add(self, fd: int, rel: str) -> None:
        wd = self._ino.add_watch(f"/proc/self/fd/{fd}", _WATCH_MASK)
        self._dirs[wd] = rel
        if not self.recursive:
            return
        with contextlib.suppress(OSError), os.scandir(fd) as it:
            names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        for name in names:
            try:
                sub = os.open(
                    name,
                    os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=fd,
                )
            except OSError:
                continue
            try:
                self._add(sub, posixpath.join(rel, name))
            except OSError:
                pass
            finally:
                os.close(sub)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.polled = loop.time()
        loop.add_reader(self._ino.fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            events = self._ino.read()
        except OSError:
            return
        for event in events:
            self._handle(event)

    def _handle(self, event: inotify.Event) -> None:
        if event.mask & inotify.IN_IGNORED:
            self._dirs.pop(event.wd, None)
            return
        base = self._dirs.get(event.wd)
        if base is None or event.mask & inotify.IN_Q_OVERFLOW:
            return
        if not event.name and base == "" and event.mask & (inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF):
            name = ""
        elif not event.name:
            return  # self events of subdirectories are reported by their parent
        else:
            name = posixpath.join(base, event.name)
        mask = event.mask
        if mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
            kind = "EVENT_TYPE_CREATE"
            if self.recursive and mask & inotify.IN_ISDIR:
                self._add_new(name)
        elif mask & (inotify.IN_MODIFY | inotify.IN_CLOSE_WRITE):
            if mask & inotify.IN_CLOSE_WRITE and not mask & inotify.IN_MODIFY:
                return  # the writes were reported already
            kind = "EVENT_TYPE_WRITE"
        elif mask & (inotify.IN_DELETE | inotify.IN_DELETE_SELF):
            kind = "EVENT_TYPE_REMOVE"
        elif mask & (inotify.IN_MOVED_FROM | inotify.IN_MOVE_SELF):
            kind = "EVENT_TYPE_RENAME"
        elif mask & inotify.IN_ATTRIB:
            kind = "EVENT_TYPE_CHMOD"
        else:
            return
        self._emit(name, kind)

    def _emit(self, name: str, kind: str) -> None:
        out: dict[str, Any] = {"name": name, "type": kind}
        if self.include_entry and kind not in (
            "EVENT_TYPE_REMOVE",
            "EVENT_TYPE_RENAME",
        ):
            with (
                contextlib.suppress(OSError, rpc.AgentError),
                rootfs.RootFS(self.fs) as root,
            ):
                out["entry"] = entry_info(root, posixpath.join(self.path, name))
        self.sink(out)

    def _add_new(self, rel: str) -> None:
        """Watch a directory that just appeared, and report what was made in it before its
        watch existed (``mkdir d && touch d/f`` can be faster than the event loop)."""
        with contextlib.suppress(OSError), rootfs.RootFS(self.fs) as root:
            fd = root.open(
                posixpath.join(self.path, rel),
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
            )
            try:
                self._add(fd, rel)
                early = _names_below(fd, rel)
            finally:
                os.close(fd)
            for name in early:
                self._emit(name, "EVENT_TYPE_CREATE")

    def close(self) -> None:
        if self._ino.fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._ino.fd)
            self._ino.close()


def _names_below(fd: int, rel: str) -> list[str]:
    """Every entry below the directory ``fd`` (named from ``rel``), without following links."""
    found = []
    with contextlib.suppress(OSError), os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        found.append(posixpath.join(rel, name))
        if is_dir:
            with contextlib.suppress(OSError):
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                try:
                    found += _names_below(sub, posixpath.join(rel, name))
                finally:
                    os.close(sub)
    return found
