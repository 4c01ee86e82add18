"""A sandbox's disk: a sparse ext4 image, loop-mounted, that holds its overlay upper layer.

Why an image per sandbox rather than a quota on one shared filesystem: this kernel has no XFS
quota support, and ext4/btrfs project quotas fail a write with EDQUOT, while programs (and the
issue) expect a full disk to say ENOSPC. A filesystem of exactly the allowed size gives ENOSPC
for free, a ``df`` inside the sandbox that tells the truth, and nothing the host can notice:
the image is sparse, so only what the sandbox writes takes host disk.

``mkfs.ext4`` on a 2 GiB sparse file takes ~10 ms here: inode tables are left for lazy init
(``lazy_itable_init``), which the mount skips (``noinit_itable``), and the journal is not
zeroed up front.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import secrets
from pathlib import Path

from sandlot.runtime import _utils, mounts

__all__ = ["DiskUsage", "Spares", "create", "mount", "unmount", "usage"]

_FLAGS = mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOATIME

# One inode per 16 KiB of disk, as mkfs's default "default" usage type.
_BYTES_PER_INODE = 16384


@dataclasses.dataclass(frozen=True)
class DiskUsage:
    used: int
    total: int


async def create(image: Path, *, size_mb: int, root_owner: int) -> None:
    """Make a sparse ext4 image of ``size_mb`` whose root directory belongs to ``root_owner``."""
    with open(  # noqa: ASYNC230 - a new sparse file in our own state directory: nothing to wait for
        image, "xb", opener=lambda p, flags: os.open(p, flags, 0o600)
    ) as f:
        f.truncate(size_mb * 1024 * 1024)
    await _utils.run(
        "mkfs.ext4", "-q", "-F",
        "-m", "0",  # no blocks reserved for root: the sandbox gets all it was promised
        "-i", str(_BYTES_PER_INODE),
        "-E", f"lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner={root_owner}:{root_owner}",
        image,
    )


def mount(image: Path, target: Path) -> None:
    """Loop-mount ``image`` on ``target``; the loop device goes away with the unmount."""
    fd, device = mounts.loop_device(image)
    try:
        mounts.mount(device, target, "ext4", flags=_FLAGS, options="noinit_itable")
    finally:
        os.close(fd)


async def unmount(target: Path) -> None:
    """Unmount the disk at ``target`` and wait for its loop device to let go of the image.

    The kernel clears an auto-clear loop device in a work item after the last unmount, so
    for a moment after `umount` returns the image is still attached; destroy means gone.
    """
    device = _source_of(target)
    await asyncio.to_thread(mounts.unmount, target)
    if device is None or not device.startswith("/dev/loop"):
        return
    backing = Path("/sys/block") / os.path.basename(device) / "loop" / "backing_file"
    # A few milliseconds on an idle host; seconds when the host is busy.
    for _ in range(2000):
        try:
            if not backing.read_text().startswith(str(target.parent)):
                return
        except OSError:  # ENOENT, or ENODEV while the kernel removes the device: let go
            return
        await asyncio.sleep(0.005)


def _source_of(target: Path) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(target):
                return fields[fields.index("-") + 2]
    return None


class Spares:
    """Disk images of the default size, made ahead of time so that a create only renames one.

    mkfs is the longest step of a sandbox's disk (~6 ms); a sandbox that asks for another
    size gets a fresh image made on the spot.
    """

    def __init__(self, directory: Path, *, size_mb: int, owner: int, count: int) -> None:
        self.directory = directory
        self.size_mb = size_mb
        self.owner = owner
        self._target = count
        self._ready: collections.deque[Path] = collections.deque()
        self._refill: asyncio.Task[None] | None = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in self.directory.iterdir():  # from a daemon that did not close
            stale.unlink()
        self.refill()

    async def take(self, image: Path, *, size_mb: int) -> None:
        """Put a fresh image of ``size_mb`` at ``image``."""
        if size_mb == self.size_mb and self._ready:
            os.rename(self._ready.popleft(), image)
        else:
            await create(image, size_mb=size_mb, root_owner=self.owner)

    def refill(self) -> None:
        """Make spares up to the target, in the background. Called once a create is done,
        so that mkfs never competes with one for the CPU."""
        if len(self._ready) < self._target and (self._refill is None or self._refill.done()):
            self._refill = asyncio.get_running_loop().create_task(self._fill())

    async def close(self) -> None:
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        for path in self.directory.iterdir():
            path.unlink()
        self._ready.clear()

    async def _fill(self) -> None:
        while len(self._ready) < self._target:
            path = self.directory / f"disk-{self.size_mb}-{secrets.token_hex(6)}.img"
            try:
                await create(path, size_mb=self.size_mb, root_owner=self.owner)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            self._ready.append(path)


def usage(target: Path) -> DiskUsage:
    st = os.statvfs(target)
    return DiskUsage(used=(st.f_blocks - st.f_bfree) * st.f_frsize, total=st.f_blocks * st.f_frsize)
