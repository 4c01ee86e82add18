"""The ``filesystem.Filesystem`` service (envd-compatible) on the sandbox's root as the host sees it.

Every path goes through `sandlot.agent.rootfs.RootFS` (``openat2`` with ``RESOLVE_IN_ROOT``), so
nothing a sandbox plants can point the agent at a host file. Relative paths are relative to the
calling user's home.

Each operation runs in a thread of the `sandlot.agent.iopool.IOPool`, never on the event loop,
with the calling user's permissions (`sandlot.agent.credentials`): what ``user`` may not do from
inside the sandbox, the API refuses with PermissionDenied; what it makes, that user owns.

Choices where E2B's contract is silent:

* A symlink is reported as ``type: FILE_TYPE_SYMLINK`` with ``isSymlink: true`` and its
  ``symlinkTarget``, so both SDK generations show it as a link (docs/e2b-wire.md 6.1).
* `MakeDir` and `Move` create missing parent directories; `Remove` removes directories
  recursively (with ``shutil.rmtree(dir_fd=...)``, which never follows links).
* `ListDir` never descends through symlinks, and stops at `MAX_ENTRIES` entries.
* Watchers (inotify) hold no descriptor of the root, so they never keep a destroyed
  sandbox's mount busy; polling watchers not polled for `WATCHER_IDLE` seconds are dropped.
  A sandbox has at most `MAX_WATCHERS` watchers (streams and polling ones) holding at most
  `MAX_WATCHES` inotify watches between them: the kernel's limits on both are per host user,
  and every sandbox's watchers are root's. Events are turned into messages (entries, new
  subdirectories) in the pool, as the watcher's user.

It is longer than the ~600 lines a module aims for because the watchers (`_Watcher`, ~170
lines) share the service's per-sandbox quota, its pool, its credentials and its entry
format, and are made and ended only by the service's own RPCs (`WatchDir`, `CreateWatcher`,
`GetWatcherEvents`, `RemoveWatcher`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import functools
import os
import posixpath
import secrets
import shutil
import stat as stats
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from sandlot._wire import errors as wire
from sandlot.agent import credentials, inotify, iopool, rootfs, rpc

__all__ = ["KEEPALIVE", "Access", "FilesystemService", "entry_info", "fs_errors", "in_pool"]

KEEPALIVE: dict[str, Any] = {"keepalive": {}}
MAX_ENTRIES = 100_000
MAX_DEPTH = 64
MAX_WATCHERS = 32
"""Watchers per sandbox: WatchDir streams and polling watchers together."""
MAX_WATCHES = 8192
"""inotify watches (one per watched directory) per sandbox, over all its watchers."""
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


# OS errors on a path, tried in order: the agent's error and its message (E2B-like).
_OS_ERRORS: tuple[tuple[type[OSError], type[wire.WireError], str], ...] = (
    (FileNotFoundError, wire.NotFound, "path '{path}' does not exist"),
    (FileExistsError, wire.AlreadyExists, "path '{path}' already exists"),
    (NotADirectoryError, wire.InvalidArgument, "path '{path}' is not a directory"),
    (IsADirectoryError, wire.InvalidArgument, "path '{path}' is a directory"),
    (PermissionError, wire.PermissionDenied, "permission denied on '{path}'"),
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_INVALID = (errno.ELOOP, errno.EXDEV, errno.ENAMETOOLONG, errno.EINVAL, errno.ENOTEMPTY)


@contextlib.contextmanager
def fs_errors(path: str) -> Iterator[None]:
    """Translate OS errors on ``path`` into the agent's, with E2B-like messages."""
    try:
        yield
    except rootfs.UnknownUser as exc:
        raise wire.InvalidArgument(str(exc)) from exc
    except rootfs.NotARegularFile as exc:
        raise wire.InvalidArgument(f"path '{path}' {exc.strerror}: only regular files can be read or written") from exc
    except OSError as exc:
        for kind, error, text in _OS_ERRORS:
            if isinstance(exc, kind):
                raise error(text.format(path=path)) from exc
        if exc.errno in _NO_SPACE:
            raise wire.NoSpace(f"not enough disk space to write '{path}'") from exc
        if exc.errno in _INVALID:
            raise wire.InvalidArgument(f"'{path}': {exc.strerror}") from exc
        raise wire.Internal(f"'{path}': {exc.strerror}") from exc


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


@dataclasses.dataclass
class Access:
    """A sandbox's root, open, and the user a call acts as: what every file job needs.

    `open` and `close` run in a pool thread as host root (they read the sandbox's passwd and
    group); the work itself runs inside `acting`.
    """

    root: rootfs.RootFS
    user: rootfs.User
    identity: credentials.Identity

    @classmethod
    def open(cls, call: rpc.Call) -> Access:
        try:
            root = rootfs.RootFS(call.target.filesystem)
        except OSError as exc:
            raise wire.Unavailable(f"The sandbox was not found (its root is gone: {exc.strerror})") from exc
        try:
            with fs_errors(call.user):
                user = root.user(call.user)
            return cls(root, user, root.identity(user))
        except BaseException:
            root.close()
            raise

    def acting(self) -> contextlib.AbstractContextManager[None]:
        return credentials.acting_as(self.identity)

    def as_user(self, fn: Callable[[], _T]) -> Callable[[], _T]:
        """``fn`` made to run `acting` as the user, for `iopool.IOPool.run`."""

        def run() -> _T:
            with self.acting():
                return fn()

        return run

    def path(self, raw: str | None, field: str = "path") -> str:
        """The sandbox-absolute form of a client path (relative ones are in the user's home)."""
        if raw is None or raw == "":
            raise wire.InvalidArgument(f"{field} must not be empty")
        try:
            return self.root.absolute(raw, self.user.home)
        except ValueError as exc:
            raise wire.InvalidArgument(str(exc)) from None

    def close(self) -> None:
        self.root.close()


async def in_pool(
    io: iopool.IOPool, call: rpc.Call, fn: Callable[[Access], _T], *, deadline: float | None = None
) -> _T:
    """``fn(access)`` in a pool thread, as the call's user, with the sandbox's root open.

    Example:
        >>> size = await in_pool(io, call, lambda a: a.root.lstat("/etc/hosts").st_size)
    """

    def run() -> _T:
        access = Access.open(call)
        try:
            with access.acting():
                return fn(access)
        finally:
            access.close()

    return await io.run(call.target.sandbox_id, run, deadline=call.deadline if deadline is None else deadline)


class _Quota:
    """What one sandbox's watchers hold: watchers (counted on the loop) and inotify watches
    (counted in pool threads)."""

    def __init__(self) -> None:
        self.watchers = 0
        self.watches = 0
        self._lock = threading.Lock()

    def take_watch(self) -> None:
        with self._lock:
            if self.watches >= MAX_WATCHES:
                raise wire.ResourceExhausted(
                    f"a sandbox's watchers may watch at most {MAX_WATCHES} directories: watch fewer or not recursively"
                )
            self.watches += 1

    def give_watches(self, count: int) -> None:
        with self._lock:
            self.watches -= count


class FilesystemService:
    """One per app; holds the polling watchers, keyed by sandbox and watcher id, and the pool
    that every file operation of the sandbox plane runs in."""

    def __init__(self, io: iopool.IOPool | None = None) -> None:
        self.io = io or iopool.IOPool()
        self._watchers: dict[tuple[str, str], _Watcher] = {}
        self._quotas: dict[str, _Quota] = {}

    async def _run(self, call: rpc.Call, fn: Callable[[Access], _T]) -> _T:
        return await in_pool(self.io, call, fn)

    # -- unary ---------------------------------------------------------------------------

    async def stat(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")

        def run(access: Access) -> dict[str, Any]:
            path = access.path(raw)
            with fs_errors(path):
                return {"entry": entry_info(access.root, path)}

        return await self._run(call, run)

    async def make_dir(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")

        def run(access: Access) -> dict[str, Any]:
            path, root = access.path(raw), access.root
            with fs_errors(path):
                try:
                    st = root.lstat(path)
                except FileNotFoundError:
                    pass
                else:
                    kind = "directory" if stats.S_ISDIR(st.st_mode) else "file"
                    raise wire.AlreadyExists(f"{kind} '{path}' already exists")
                root.make_dirs(path, exist_ok=False)
                return {"entry": entry_info(root, path)}

        return await self._run(call, run)

    async def move(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw_source, raw_dest = (
            rpc.get_str(message, "source"),
            rpc.get_str(message, "destination"),
        )

        def run(access: Access) -> dict[str, Any]:
            source = access.path(raw_source, "source")
            dest = access.path(raw_dest, "destination")
            root = access.root
            if source == "/" or dest == "/":
                raise wire.InvalidArgument("the root directory cannot be moved or replaced")
            with fs_errors(source):
                root.lstat(source)
            with fs_errors(dest):
                root.make_dirs(posixpath.dirname(dest))
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

        return await self._run(call, run)

    async def list_dir(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")
        depth = min(max(rpc.get_int(message, "depth") or 1, 1), MAX_DEPTH)

        def run(access: Access) -> dict[str, Any]:
            path = access.path(raw)
            entries: list[dict[str, Any]] = []
            with fs_errors(path):
                fd = access.root.open(path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    _walk(access.root, fd, path, depth, entries)
                finally:
                    os.close(fd)
            return {"entries": entries}

        return await self._run(call, run)

    async def remove(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        raw = rpc.get_str(message, "path")

        def run(access: Access) -> dict[str, Any]:
            path = access.path(raw)
            if path == "/":
                raise wire.InvalidArgument("the root directory cannot be removed")
            with fs_errors(path):
                pfd, name = access.root.parent(path)
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    if stats.S_ISDIR(st.st_mode):
                        shutil.rmtree(name, dir_fd=pfd)
                    else:
                        os.unlink(name, dir_fd=pfd)
                finally:
                    os.close(pfd)
            return {}

        return await self._run(call, run)

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
        sid = call.target.sandbox_id
        quota = self._quotas.get(sid) or _Quota()
        if quota.watchers >= MAX_WATCHERS:
            raise wire.ResourceExhausted(f"a sandbox may have at most {MAX_WATCHERS} watchers: remove one first")
        try:
            watcher = _Watcher(quota, recursive, include_entry, sink)
        except OSError as exc:
            raise wire.ResourceExhausted(f"the host cannot make another watcher now: {exc.strerror}") from exc
        self._quotas[sid] = quota
        quota.watchers += 1

        def run(access: Access) -> None:
            watcher.path = access.path(raw)
            with fs_errors(watcher.path):
                fd = access.root.open(watcher.path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    watcher.add(fd, "")
                finally:
                    os.close(fd)

        try:
            await self._run(call, run)
        except BaseException:
            self._release(sid, watcher)
            raise
        watcher.attach(asyncio.get_running_loop(), self.io, call)
        return watcher

    def _release(self, sid: str, watcher: _Watcher) -> None:
        watcher.close()
        quota = self._quotas[sid]
        quota.watchers -= 1
        if not quota.watchers:
            del self._quotas[sid]

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
            self._release(call.target.sandbox_id, watcher)

    async def create_watcher(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        sid = call.target.sandbox_id
        self._expire()
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
            raise wire.NotFound(f"watcher {key[1]!r} not found")
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
        self._release(key[0], watcher)
        return {}

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        for key, watcher in list(self._watchers.items()):
            if now - watcher.polled > WATCHER_IDLE:
                del self._watchers[key]
                self._release(key[0], watcher)

    def close(self) -> None:
        for (sid, _), watcher in list(self._watchers.items()):
            self._release(sid, watcher)
        self._watchers.clear()


def _walk(root: rootfs.RootFS, fd: int, path: str, depth: int, out: list[dict[str, Any]]) -> None:
    with os.scandir(fd) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        if len(out) >= MAX_ENTRIES:
            raise wire.ResourceExhausted(f"the listing is over {MAX_ENTRIES} entries: ask for a smaller depth")
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


class _Watcher:
    """An inotify watch of one directory (and, if recursive, of every directory below it).

    The inotify descriptor is read on the event loop (it never blocks); the events are turned
    into messages in the pool (`_drain`), one batch at a time so that they keep their order.
    The descriptor is closed by whichever of `close` and `_drain` comes last, so that no pool
    thread works on a closed (or reused) descriptor number.
    """

    def __init__(
        self, quota: _Quota, recursive: bool, include_entry: bool, sink: Callable[[dict[str, Any]], None]
    ) -> None:
        self.path = "/"
        self.recursive = recursive
        self.include_entry = include_entry
        self.sink = sink
        self.pending: collections.deque[dict[str, Any]] = collections.deque()
        self.polled = 0.0
        self._quota = quota
        self._ino = inotify.Inotify()
        self._dirs: dict[int, str] = {}
        self._raw: collections.deque[inotify.Event] = collections.deque(maxlen=MAX_PENDING)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    def add(self, fd: int, rel: str) -> None:
        """Watch the directory ``fd`` (named ``rel`` below the watched path) and, if
        recursive, every directory below it. Runs in a pool thread as the watcher's user."""
        self._quota.take_watch()
        try:
            wd = self._ino.add_watch(f"/proc/self/fd/{fd}", _WATCH_MASK)
        except BaseException:
            self._quota.give_watches(1)
            raise
        if wd in self._dirs:
            self._quota.give_watches(1)  # the same directory again (a bind mount, a race)
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
                self.add(sub, posixpath.join(rel, name))
            except OSError:
                pass
            finally:
                os.close(sub)

    def attach(self, loop: asyncio.AbstractEventLoop, io: iopool.IOPool, call: rpc.Call) -> None:
        self._loop = loop
        self._io = io
        self._call = dataclasses.replace(call, deadline=None)  # the call that made it is over
        self.polled = loop.time()
        loop.add_reader(self._ino.fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            events = self._ino.read()
        except OSError:
            return
        self._raw.extend(events)
        if events and self._drainer is None and self._loop is not None:
            self._drainer = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        """Turn the queued events into messages in the pool, batch after batch, in order."""
        try:
            while self._raw and not self._closed:
                batch = list(self._raw)
                self._raw.clear()
                try:
                    out = await in_pool(self._io, self._call, functools.partial(self._messages, batch=batch))
                except wire.WireError:
                    continue  # the sandbox is gone or its files hang: these events are lost
                for message in out:
                    if not self._closed:
                        self.sink(message)
        finally:
            self._drainer = None
            if self._closed:
                self._close_inotify()

    def _messages(self, access: Access, batch: list[inotify.Event]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in batch:
            self._handle(access.root, event, out)
        return out

    def _handle(self, root: rootfs.RootFS, event: inotify.Event, out: list[dict[str, Any]]) -> None:
        if event.mask & inotify.IN_IGNORED:
            if self._dirs.pop(event.wd, None) is not None:
                self._quota.give_watches(1)
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
                self._add_new(root, name, out)
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
        self._emit(root, name, kind, out)

    def _emit(self, root: rootfs.RootFS, name: str, kind: str, out: list[dict[str, Any]]) -> None:
        message: dict[str, Any] = {"name": name, "type": kind}
        if self.include_entry and kind not in ("EVENT_TYPE_REMOVE", "EVENT_TYPE_RENAME"):
            with contextlib.suppress(OSError, wire.WireError):
                message["entry"] = entry_info(root, posixpath.join(self.path, name))
        out.append(message)

    def _add_new(self, root: rootfs.RootFS, rel: str, out: list[dict[str, Any]]) -> None:
        """Watch a directory that just appeared, and report what was made in it before its
        watch existed (``mkdir d && touch d/f`` can be faster than the event loop)."""
        with contextlib.suppress(OSError, wire.WireError):
            fd = root.open(posixpath.join(self.path, rel), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                self.add(fd, rel)
                early = _names_below(fd, rel)
            finally:
                os.close(fd)
            for name in early:
                self._emit(root, name, "EVENT_TYPE_CREATE", out)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed() and self._ino.fd >= 0:
            self._loop.remove_reader(self._ino.fd)
        if self._drainer is None:
            self._close_inotify()

    def _close_inotify(self) -> None:
        if self._ino.fd >= 0:
            self._ino.close()
            self._quota.give_watches(len(self._dirs))
            self._dirs.clear()


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
