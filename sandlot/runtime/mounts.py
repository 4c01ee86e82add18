"""mount(2), umount2(2) and loop devices, called directly.

Sandbox creation mounts twice (the disk image, then the overlay) and destroy unmounts twice;
through the ``mount`` and ``umount`` programs each call costs a fork and exec (~2-4 ms here),
as a system call well under one. The loop device is set up with one ``LOOP_CONFIGURE`` ioctl
and the auto-clear flag, so it goes away by itself with the last unmount.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct

from sandlot.runtime import errors

__all__ = ["MS_NOATIME", "MS_NODEV", "MS_NOEXEC", "MS_NOSUID", "loop_device", "mount", "remount", "unmount"]

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_NOATIME = 0x400
_MS_REMOUNT = 0x20
_MOUNT_FLAGS = {"ro": 0x1, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                "nodiratime": 0x800, "relatime": 0x200000, "strictatime": 0x1000000}
_MNT_DETACH = 0x2

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
# struct loop_config { u32 fd; u32 block_size; struct loop_info64 info; u64 reserved[8]; }
# loop_info64: 5 x u64, 4 x u32 (number, encrypt type, key size, flags), 64 + 64 + 32 bytes
# of names and key, 2 x u64.
_LOOP_CONFIG = struct.Struct("=II QQQQQ IIII 64s64s32s QQ 64x")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _fail(what: str) -> errors.RuntimeDriverError:
    code = ctypes.get_errno()
    return errors.RuntimeDriverError(f"{what}: {os.strerror(code)}")


def mount(source: str, target: str | os.PathLike[str], fstype: str, *, flags: int = 0, options: str = "") -> None:
    if _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags, options.encode()) != 0:
        raise _fail(f"mount {fstype} on {os.fspath(target)}")


def remount(target: str | os.PathLike[str], mount_options: str, fs_options: str) -> None:
    """Change the options of what is mounted on ``target``, as /proc/self/mountinfo spells
    them: ``mount_options`` (nosuid, relatime...) and ``fs_options``. All of them: one left
    out goes back to its default."""
    flags = _MS_REMOUNT
    for option in mount_options.split(","):
        flags |= _MOUNT_FLAGS.get(option, 0)
    if _libc.mount(None, os.fsencode(target), None, flags, fs_options.encode()) != 0:
        raise _fail(f"remount {os.fspath(target)} with {fs_options}")


def unmount(target: str | os.PathLike[str]) -> None:
    """Unmount ``target`` if it is a mount point; lazily when it is still busy."""
    path = os.fsencode(target)
    if not os.path.ismount(path):
        return
    if _libc.umount2(path, 0) != 0 and (
        ctypes.get_errno() != errno.EBUSY or _libc.umount2(path, _MNT_DETACH) != 0
    ):
        raise _fail(f"umount {os.fsdecode(path)}")


def loop_device(image: str | os.PathLike[str]) -> tuple[int, str]:
    """Attach ``image`` to a free loop device; return an open fd on the device and its path.

    The caller mounts the device, then closes the fd: from then on the mount holds the
    device, and the unmount frees it. Closing the fd without mounting frees it at once.
    """
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(16):
                number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
                path = f"/dev/loop{number}"
                if not os.path.exists(path):  # a /dev that is not devtmpfs lacks new nodes
                    os.mknod(path, stat.S_IFBLK | 0o660, os.makedev(7, number))
                device = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                config = _LOOP_CONFIG.pack(
                    backing, 0, 0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR,
                    os.fsencode(image)[-63:], b"", b"", 0, 0,
                )
                try:
                    fcntl.ioctl(device, _LOOP_CONFIGURE, config)
                except OSError as exc:
                    os.close(device)
                    if exc.errno == errno.EBUSY:  # another create took the same device first
                        continue
                    raise errors.RuntimeDriverError(f"loop device for {image}: {exc}") from exc
                return device, path
        finally:
            os.close(control)
    finally:
        os.close(backing)
    raise errors.RuntimeDriverError(f"no free loop device for {image}")
