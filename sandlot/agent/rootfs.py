"""A sandbox's root filesystem seen from the host, where no path can lead outside it.

Every lookup goes through ``openat2(root_fd, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``
(Linux 5.6+): the kernel resolves ``..``, absolute paths and symlinks as if ``root_fd`` were
``/``, so a symlink to ``/etc/shadow`` planted by sandbox code names the sandbox's
``/etc/shadow``, never the host's. Operations on a last path component that must not follow a
link (lstat, unlink, rename, mkdir, readlink) work on ``(parent_fd, name)`` with the ``*at``
syscalls, the parent itself opened through ``openat2``. Client paths are never joined onto the
host path of the root.

Paths the clients give are normalised lexically first (relative ones against the user's home)
into the sandbox-absolute form that the replies show; the kernel then does the real
resolution.

Opening never blocks: the path is first opened ``O_PATH`` (which opens nothing: no FIFO
waits for a writer, no device driver runs), `os.fstat` tells what it is, and only a regular
file is then opened for reading or writing, through its ``/proc/self/fd`` link, so the file
checked is the file opened even if sandbox code renames another into place meanwhile. FIFOs,
sockets and devices are `NotARegularFile`. A new file is made with ``O_CREAT | O_EXCL``, which
makes a regular file or fails; when that fails on a dangling symlink, the link is followed by
hand (its parent's real place from ``/proc/self/fd``, then its target), as the kernel would.

Users: the sandbox's own ``/etc/passwd`` and ``/etc/group`` (read through the same resolution,
regular files of at most `MAX_ETC` bytes) give a user's uid, gid, groups and home; uid ``u``
inside is ``uid_base + u`` on the host.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import posixpath
import stat as stats
import struct
from collections.abc import Iterator

from sandlot.agent import credentials
from sandlot.runtime import models

__all__ = ["MAX_ETC", "NotARegularFile", "RootFS", "UnknownUser", "User"]

_SYS_OPENAT2 = 437  # x86_64 and aarch64 alike
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
MAX_ETC = 1024 * 1024
"""The largest ``/etc/passwd`` or ``/etc/group`` read; a larger one counts as missing."""
_REOPEN_ATTEMPTS = 40
"""Links followed and races retried before giving up (the kernel follows 40 links)."""
_KINDS = {
    stats.S_IFIFO: "a FIFO",
    stats.S_IFSOCK: "a socket",
    stats.S_IFCHR: "a character device",
    stats.S_IFBLK: "a block device",
    stats.S_IFLNK: "a symbolic link to nothing",
}


class UnknownUser(LookupError):
    pass


class NotARegularFile(OSError):
    """The path names a FIFO, socket or device: the files API reads and writes only files."""

    def __init__(self, path: str, mode: int) -> None:
        super().__init__(errno.EINVAL, f"is {_KINDS.get(stats.S_IFMT(mode), 'not a regular file')}", path)


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """The ``openat2`` syscall; raises OSError like `os.open`."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    while True:
        fd = _libc.syscall(_SYS_OPENAT2, dirfd, raw, how, len(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (
            errno.EAGAIN,
            errno.EINTR,
        ):  # EAGAIN: a concurrent rename; try again
            raise OSError(err, os.strerror(err), path)


class RootFS:
    """An open handle on one sandbox's root; close it (or use ``with``) when done.

    Example:
        >>> with RootFS(await driver.filesystem(sandbox_id=sid)) as root:
        ...     fd = root.open("/home/user/a.txt", os.O_RDONLY)
    """

    def __init__(self, fs: models.HostFilesystem) -> None:
        self.uid_base = fs.uid_base
        self.fd = os.open(fs.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._users: dict[str, User] | None = None
        self._names: dict[int, str] | None = None
        self._groups: dict[int, str] | None = None

    def __enter__(self) -> RootFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- paths ---------------------------------------------------------------------------

    @staticmethod
    def absolute(path: str, home: str) -> str:
        """The sandbox-absolute, lexically normal form of a client path."""
        if "\0" in path:
            raise ValueError("paths must not contain NUL characters")
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            raise ValueError(f"path {path!r} holds a lone UTF-16 surrogate, which no file name can") from None
        joined = path if path.startswith("/") else posixpath.join(home or "/", path)
        normal = posixpath.normpath(joined)
        return "/" + normal.lstrip("/")

    def open(self, path: str, flags: int, mode: int = 0) -> int:
        """Open ``path`` (sandbox-absolute) with every component resolved inside the root."""
        return openat2(
            self.fd,
            path.lstrip("/") or ".",
            flags,
            mode,
            _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS,
        )

    def parent(self, path: str) -> tuple[int, str]:
        """An O_PATH fd of the directory holding ``path``, and the last component's name."""
        head, name = posixpath.split(path)
        if not name:
            raise IsADirectoryError(errno.EISDIR, "the root directory has no parent", path)
        return self.open(head, os.O_PATH | os.O_DIRECTORY), name

    def lstat(self, path: str) -> os.stat_result:
        if path == "/":
            return os.fstat(self.fd)
        pfd, name = self.parent(path)
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def readlink(self, path: str) -> str:
        pfd, name = self.parent(path)
        try:
            return os.readlink(name, dir_fd=pfd)
        finally:
            os.close(pfd)

    def open_file(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open the regular file ``path`` for reading or writing, without ever blocking.

        ``flags`` are `os.open` flags; with ``O_CREAT`` a missing file is made (owned by the
        calling thread's fsuid and fsgid). Raises `NotARegularFile` for anything but a file,
        `IsADirectoryError` for a directory, and the usual OSErrors.
        """
        reopen = (flags & ~(os.O_CREAT | os.O_EXCL)) | os.O_NOCTTY | os.O_CLOEXEC
        for _ in range(_REOPEN_ATTEMPTS):
            try:
                handle = self.open(path, os.O_PATH)
            except FileNotFoundError:
                if not flags & os.O_CREAT:
                    raise
                try:
                    return self.open(path, reopen | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                except FileExistsError:
                    path = self._dangling_target(path) or path  # or made meanwhile: look again
                    continue
            try:
                st = os.fstat(handle)
                if stats.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a directory", path)
                if not stats.S_ISREG(st.st_mode):
                    raise NotARegularFile(path, st.st_mode)
                return os.open(f"/proc/self/fd/{handle}", reopen)
            finally:
                os.close(handle)
        raise NotARegularFile(path, stats.S_IFLNK)

    def _dangling_target(self, path: str) -> str | None:
        """Where the symlink ``path`` points, as a sandbox path; None if it is no symlink."""
        pfd, name = self.parent(path)
        try:
            try:
                target = os.readlink(name, dir_fd=pfd)
            except OSError:
                return None
            if target.startswith("/"):
                return target
            top = os.readlink(f"/proc/self/fd/{self.fd}").rstrip("/")
            here = os.readlink(f"/proc/self/fd/{pfd}")
            if here != top and not here.startswith(top + "/"):
                return None
            return f"{here[len(top):]}/{target}"
        finally:
            os.close(pfd)

    def make_dirs(self, path: str, *, exist_ok: bool = True) -> bool:
        """Make ``path`` and missing parents (owned by the calling thread's fsuid and fsgid);
        False if it already existed."""
        parts = [p for p in path.split("/") if p]
        current = ""
        created = False
        for i, part in enumerate(parts):
            parent_path = current or "/"
            current = f"{current}/{part}"
            pfd = self.open(parent_path, os.O_PATH | os.O_DIRECTORY)
            try:
                try:
                    os.mkdir(part, 0o755, dir_fd=pfd)
                except FileExistsError:
                    if i == len(parts) - 1 and not exist_ok:
                        raise
                    continue
                created = True
            finally:
                os.close(pfd)
        return created

    # -- users ---------------------------------------------------------------------------

    def identity(self, user: User) -> credentials.Identity:
        """The host ids that ``user`` acts with: uid, gid and the groups ``/etc/group`` lists."""
        groups = {user.gid}
        for fields in self._read_etc("group"):
            if len(fields) >= 4 and fields[2].isdigit() and user.name in fields[3].split(","):
                groups.add(int(fields[2]))
        return credentials.Identity(
            uid=self.uid_base + user.uid,
            gid=self.uid_base + user.gid,
            groups=tuple(sorted(self.uid_base + g for g in groups)),
            root=user.uid == 0,
        )

    def _read_etc(self, name: str) -> Iterator[list[str]]:
        """The lines of ``/etc/<name>``; none if it is not a regular file of at most MAX_ETC."""
        try:
            fd = self.open_file(f"/etc/{name}", os.O_RDONLY)
        except OSError:
            return
        try:
            data = os.read(fd, MAX_ETC + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_ETC:
            return
        for line in data.decode("utf-8", "replace").splitlines():
            if line and not line.startswith("#"):
                yield line.split(":")

    def _load_users(self) -> dict[str, User]:
        if self._users is None:
            self._users = {}
            for fields in self._read_etc("passwd"):
                if len(fields) >= 7 and fields[2].isdigit() and fields[3].isdigit():
                    user = User(fields[0], int(fields[2]), int(fields[3]), fields[5] or "/")
                    self._users.setdefault(user.name, user)
        return self._users

    def user(self, name: str) -> User:
        """The sandbox user ``name`` (a user name or a numeric uid)."""
        users = self._load_users()
        if name in users:
            return users[name]
        if name.isdigit():
            for user in users.values():
                if user.uid == int(name):
                    return user
        raise UnknownUser(f"user {name!r} does not exist in the sandbox")

    def owner_name(self, host_uid: int) -> str:
        if self._names is None:
            self._names = {u.uid: u.name for u in self._load_users().values()}
        uid = host_uid - self.uid_base
        return self._names.get(uid, str(uid))

    def group_name(self, host_gid: int) -> str:
        if self._groups is None:
            self._groups = {}
            for fields in self._read_etc("group"):
                if len(fields) >= 3 and fields[2].isdigit():
                    self._groups.setdefault(int(fields[2]), fields[0])
        gid = host_gid - self.uid_base
        return self._groups.get(gid, str(gid))


def is_dir(st: os.stat_result) -> bool:
    return stats.S_ISDIR(st.st_mode)
