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

import dataclasses
import os
from pathlib import Path

from sandlot.runtime import _utils

__all__ = ["DiskUsage", "create", "mount", "unmount", "usage"]

# One inode per 16 KiB of disk, as mkfs's default "default" usage type.
_BYTES_PER_INODE = 16384


@dataclasses.dataclass(frozen=True)
class DiskUsage:
    used: int
    total: int


async def create(image: Path, *, size_mb: int, root_owner: int) -> None:
    """Make a sparse ext4 image of ``size_mb`` whose root directory belongs to ``root_owner``."""
    with open(image, "xb", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
        f.truncate(size_mb * 1024 * 1024)
    await _utils.run(
        "mkfs.ext4", "-q", "-F",
        "-m", "0",  # no blocks reserved for root: the sandbox gets all it was promised
        "-i", str(_BYTES_PER_INODE),
        "-E", f"lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner={root_owner}:{root_owner}",
        image,
    )  # fmt: skip


async def mount(image: Path, target: Path) -> None:
    """Loop-mount ``image`` on ``target``; the loop device goes away with the unmount."""
    await _utils.run(
        "mount", "-t", "ext4", "-o", "loop,noatime,nosuid,nodev,noinit_itable", image, target
    )


async def unmount(target: Path) -> None:
    """Unmount ``target`` if it is mounted; lazily when something still holds it busy."""
    if not os.path.ismount(target):
        return
    try:
        await _utils.run("umount", target)
    except _utils.CommandError:
        await _utils.run("umount", "--lazy", target)


def usage(target: Path) -> DiskUsage:
    st = os.statvfs(target)
    return DiskUsage(used=(st.f_blocks - st.f_bfree) * st.f_frsize, total=st.f_blocks * st.f_frsize)
