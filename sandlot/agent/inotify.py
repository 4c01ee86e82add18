"""A minimal ctypes binding of inotify(7): init, add/remove watches, read events.

No PyPI package fits: the ones that exist either wrap paths only (we watch directories we
reached through ``openat2``, by their ``/proc/self/fd`` link) or bring threads of their own.
This is the few syscalls the watcher needs, non-blocking, for an event loop's ``add_reader``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import struct

__all__ = ["Event", "Inotify"]

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_HEADER = struct.Struct("iIII")
_libc = ctypes.CDLL(None, use_errno=True)


@dataclasses.dataclass(frozen=True)
class Event:
    wd: int
    mask: int
    cookie: int
    name: str


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class Inotify:
    """One inotify instance (a non-blocking fd).

    Example:
        >>> ino = Inotify()
        >>> wd = ino.add_watch(f"/proc/self/fd/{dir_fd}", IN_CREATE | IN_DELETE)
        >>> ino.read()  # [] until something happens
    """

    def __init__(self) -> None:
        self.fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")

    def add_watch(self, path: str, mask: int) -> int:
        return _check(
            _libc.inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask)),
            "inotify_add_watch",
        )

    def rm_watch(self, wd: int) -> None:
        _libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[Event]:
        """Every event queued now; [] when there is none."""
        try:
            data = os.read(self.fd, 256 * 1024)
        except BlockingIOError:
            return []
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return []
            raise
        events, pos = [], 0
        while pos + _HEADER.size <= len(data):
            wd, mask, cookie, length = _HEADER.unpack_from(data, pos)
            raw = data[pos + _HEADER.size : pos + _HEADER.size + length]
            events.append(Event(wd, mask, cookie, os.fsdecode(raw.rstrip(b"\0"))))
            pos += _HEADER.size + length
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
