"""File access as a sandbox user, from one host thread: fsuid, fsgid, groups, capabilities.

The daemon runs as host root; a file operation on behalf of a sandbox user must get exactly
the permissions that user has inside the sandbox (envd runs as that user). Linux keeps all
of these credentials per *thread*, so a worker thread can take them on around one operation
and give them back, while the rest of the process stays root:

* ``setfsuid``/``setfsgid`` (glibc calls the syscall directly; it does not broadcast them to
  every thread as it does ``setresuid``). Moving fsuid from 0 to anything else makes the kernel
  clear the file-system capabilities (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``,
  ``CAP_FOWNER``, ``CAP_CHOWN``, ``CAP_FSETID`` ...) from the thread's effective set; moving it
  back to 0 raises them again from the permitted set.
* ``setgroups`` through the raw syscall: glibc's wrapper changes every thread of the process.
* ``capset`` on the calling thread: we set the effective set explicitly after the switch,
  rather than trusting the fsuid fix-up alone.

Sandbox root (uid 0 inside) is host uid ``uid_base``: it keeps ``CAP_DAC_OVERRIDE``,
``CAP_DAC_READ_SEARCH`` and ``CAP_FOWNER``, as root inside its user namespace has them. Every
path is still resolved inside the sandbox's root (`sandlot.agent.rootfs`), so they reach no
host file. With no user namespace (``uid_base`` 0) sandbox root is host root.

If the old credentials cannot be put back the thread is marked `tainted`; the pool that owns
it lets it end instead of giving it more work.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import platform
import threading
from collections.abc import Iterator, Sequence

__all__ = ["Identity", "acting_as", "tainted"]

_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}[platform.machine()]
_CAP_VERSION_3 = 0x20080522
_CAP_CHOWN, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER, _CAP_FSETID = 0, 1, 2, 3, 4
_CAP_LINUX_IMMUTABLE, _CAP_MKNOD = 9, 27
_FS_CAPS = sum(
    1 << c
    for c in (
        _CAP_CHOWN, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER, _CAP_FSETID, _CAP_LINUX_IMMUTABLE, _CAP_MKNOD
    )
)
_ROOT_CAPS = (1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH) | (1 << _CAP_FOWNER)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_local = threading.local()


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@dataclasses.dataclass(frozen=True)
class Identity:
    """Host ids to act with: fsuid, fsgid and supplementary groups."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    root: bool
    """Sandbox root: keeps the capabilities that override file permissions."""


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _get_caps() -> tuple[int, int, int]:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def _set_effective(effective: int) -> None:
    _, permitted, inheritable = _get_caps()
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _set_groups(groups: Sequence[int]) -> None:
    array = (ctypes.c_uint32 * max(len(groups), 1))(*groups)
    _check(_libc.syscall(_SYS_SETGROUPS, len(groups), array), "setgroups")


def _set_fs_ids(uid: int, gid: int) -> None:
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    # Both return the previous id and never fail loudly: read them back (-1 changes nothing).
    if _libc.setfsgid(-1) != gid or _libc.setfsuid(-1) != uid:
        raise PermissionError(f"could not switch this thread to fsuid {uid}, fsgid {gid}")


def tainted() -> bool:
    """Whether this thread failed to get its own credentials back (it must do no more work)."""
    return bool(getattr(_local, "tainted", False))


@contextlib.contextmanager
def acting_as(identity: Identity) -> Iterator[None]:
    """Run the body with ``identity``'s file permissions, on this thread only.

    Example:
        >>> with acting_as(Identity(101000, 101000, (101000,), root=False)):
        ...     os.open("/srv/box/rootfs/etc/passwd", os.O_WRONLY)  # PermissionError
    """
    saved = (_libc.setfsuid(-1), _libc.setfsgid(-1), os.getgroups(), _get_caps()[0])
    try:
        _set_groups(identity.groups)
        _set_fs_ids(identity.uid, identity.gid)
        effective = saved[3]
        _set_effective(effective & ~_FS_CAPS | (effective & _ROOT_CAPS if identity.root else 0))
    except BaseException:
        _restore(*saved)
        raise
    try:
        yield
    finally:
        _restore(*saved)


def _restore(uid: int, gid: int, groups: Sequence[int], effective: int) -> None:
    try:
        _set_fs_ids(uid, gid)
        _set_groups(groups)
        _set_effective(effective)
    except OSError:
        _local.tainted = True
        raise
