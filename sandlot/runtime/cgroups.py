"""Reading a sandbox's cgroup: usage figures for stats, on cgroups v1 and v2.

runc creates, limits, freezes and removes the cgroup; this module only reads it and finds
leftovers. The layout is detected once: v2 when ``/sys/fs/cgroup/cgroup.controllers`` exists
(unified hierarchy), v1 otherwise (one hierarchy per controller, as on these hybrid machines,
where the ``unified`` mount carries no controllers).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["CgroupUsage", "cgroup_dirs", "is_v2", "remove", "usage"]

ROOT = Path("/sys/fs/cgroup")
# "systemd" (name=systemd) is not a controller, but runc makes the cgroup there too.
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "devices", "cpuset", "systemd")


def is_v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


@dataclasses.dataclass(frozen=True)
class CgroupUsage:
    cpu_usage_ns: int
    memory_bytes: int
    pids: int


def cgroup_dirs(path: str) -> list[Path]:
    """The directories that make up the cgroup ``path`` (one per v1 controller) that exist."""
    rel = path.lstrip("/")
    if is_v2():
        candidates = [ROOT / rel]
    else:
        candidates = [ROOT / c / rel for c in _V1_CONTROLLERS]
    return [c for c in candidates if c.is_dir()]


def usage(path: str) -> CgroupUsage:
    rel = path.lstrip("/")
    if is_v2():
        base = ROOT / rel
        cpu = int(_keyed(base / "cpu.stat")["usage_usec"]) * 1000
        memory = _int(base / "memory.current")
        pids = _int(base / "pids.current")
    else:
        cpu = _int(ROOT / "cpuacct" / rel / "cpuacct.usage")
        memory = _v1_memory(ROOT / "memory" / rel)
        pids = _int(ROOT / "pids" / rel / "pids.current")
    return CgroupUsage(cpu_usage_ns=cpu, memory_bytes=memory, pids=pids)


def _v1_memory(base: Path) -> int:
    # usage_in_bytes counts reclaimable page cache; report what `free` would call used.
    stat = _keyed(base / "memory.stat")
    return max(0, _int(base / "memory.usage_in_bytes") - int(stat.get("total_inactive_file", 0)))


def _int(path: Path) -> int:
    with open(path) as f:
        return int(f.read().strip() or 0)


def _keyed(path: Path) -> dict[str, str]:
    with open(path) as f:
        return dict(line.split(None, 1) for line in f if line.strip())


def remove(path: str) -> None:
    """Remove the (empty) cgroup ``path`` left behind by a runc that died before cleaning up."""
    dirs = cgroup_dirs(path)
    if not is_v2() and (ROOT / "unified" / path.lstrip("/")).is_dir():
        dirs.append(ROOT / "unified" / path.lstrip("/"))  # the hybrid layout's empty v2 tree
    for d in dirs:
        for sub in sorted(d.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass
