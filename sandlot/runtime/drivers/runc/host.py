"""Host-side helpers of the runc driver: the daemon as subreaper, processes seen through
/proc, filesystem freezes and sparse copies, and work inside a sandbox's IPC namespace."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sandlot.runtime import _utils, errors, oci

__all__ = [
    "FIFREEZE",
    "FITHAW",
    "alive",
    "become_subreaper",
    "check_traversable",
    "clear_ipc",
    "copy_sparse",
    "frozen_filesystem",
    "in_own_thread",
    "read_byte",
    "wait_init_quiet",
]

_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def become_subreaper() -> None:
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise errors.RuntimeDriverError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def check_traversable(path: Path) -> None:
    for d in (path, *path.parents):
        if not os.stat(d).st_mode & 0o001:
            raise errors.RuntimeDriverError(
                f"{d} must be searchable by others (chmod o+x) for user-namespaced sandboxes "
                f"to reach their root filesystem under {path}"
            )


def alive(pid: int, reaper: asyncio.Task[int] | None) -> bool:
    if reaper is not None:
        return not reaper.done()
    if pid <= 0:
        return False  # a checkpointed sandbox has no init (and kill(0) means our group)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"


async def read_byte(fd: int) -> bytes:
    await _utils.readable(fd)
    return os.read(fd, 1)


async def wait_init_quiet(init_pid: int, timeout: float = 1.0) -> None:
    """Wait (at most ``timeout``) until no connection to init's port is open in the sandbox's
    network namespace, as /proc/<init>/net/tcp shows it (ESTABLISHED or CLOSE_WAIT).

    The table is read in a thread: a tenant with many sockets makes it long, and parsing it on
    the event loop would stall every other sandbox's requests meanwhile.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while await asyncio.to_thread(_init_connected, init_pid):
        if asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(0.005)


def _init_connected(init_pid: int) -> bool:
    port = f":{oci.INIT_PORT:04X}"
    try:
        with open(f"/proc/{init_pid}/net/tcp") as f:
            next(f, None)  # the header
            return any(
                len(r) > 3 and r[1].endswith(port) and r[3] in ("01", "08") for r in map(str.split, f)
            )
    except OSError:
        return False


FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


@contextlib.contextmanager
def frozen_filesystem(mountpoint: Path) -> Iterator[None]:
    """Flush and freeze a mounted filesystem, so that its image file is consistent."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
        try:
            yield
        finally:
            fcntl.ioctl(fd, FITHAW, 0)
    finally:
        os.close(fd)


def copy_sparse(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest``, leaving its holes holes: a 2 GiB disk image with 50 MiB
    written costs 50 MiB to copy."""
    with open(source, "rb") as src, open(dest, "xb", opener=lambda p, f: os.open(p, f, 0o600)) as dst:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                data = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(src.fileno(), data, os.SEEK_HOLE)
            copied = data
            while copied < hole:
                n = os.copy_file_range(src.fileno(), dst.fileno(), hole - copied, copied, copied)
                if n == 0:
                    break
                copied += n
            offset = hole
        dst.truncate(size)

_CLONE_NEWIPC = 0x08000000
_IPC_RMID = 0


def clear_ipc(init_pid: int) -> None:
    """Remove every System V IPC object and POSIX message queue of init's IPC namespace.

    They outlive the processes that made them, so a run could leave one for the next. This
    thread joins the namespace (``/proc/sysvipc`` and the ``*ctl`` calls see the calling
    thread's), removes what it lists, and goes back; message queues are unlinked through the
    sandbox's own ``/dev/mqueue``.
    """
    own = os.open("/proc/thread-self/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    theirs = os.open(f"/proc/{init_pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(theirs, _CLONE_NEWIPC) != 0:
            raise OSError(ctypes.get_errno(), f"setns into the IPC namespace of {init_pid}")
        try:
            removers: dict[str, Callable[[int], int]] = {
                "shm": lambda i: _libc.shmctl(i, _IPC_RMID, None),
                "sem": lambda i: _libc.semctl(i, 0, _IPC_RMID),
                "msg": lambda i: _libc.msgctl(i, _IPC_RMID, None),
            }
            for kind, remove in removers.items():
                with open(f"/proc/sysvipc/{kind}") as f:
                    for line in f.readlines()[1:]:
                        if line.strip():
                            remove(int(line.split()[1]))
        finally:
            if _libc.setns(own, _CLONE_NEWIPC) != 0:
                raise OSError(ctypes.get_errno(), "setns back into the daemon's IPC namespace")
    finally:
        os.close(own)
        os.close(theirs)
    queues = os.open(f"/proc/{init_pid}/root/dev/mqueue", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(queues):
            os.unlink(name, dir_fd=queues)
    finally:
        os.close(queues)


async def in_own_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in a thread of its own that ends with it, so that a thread whose namespaces
    ``fn`` changed can never be handed other work (as a pool's thread could)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if not done.done():
            done.set_exception(exc) if exc is not None else done.set_result(result)

    def target() -> None:
        try:
            result, exc = fn(*args), None
        except BaseException as caught:  # noqa: BLE001 - handed to the awaiting task
            result, exc = None, caught
        loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=target, name="sandlot-ns", daemon=True).start()
    return await done
