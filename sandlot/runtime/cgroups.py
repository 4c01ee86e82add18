"""A sandbox's cgroup on cgroups v1 and v2: usage figures, and what runner sandboxes change.

runc creates, limits and removes the cgroup. This module reads its figures, finds leftovers,
and does the few things faster than a ``runc`` call (~10 ms of CPU each) could: freeze it to
kill every process (all of them once a pause has dumped them; all but init between two runs
of a runner sandbox), reset the memory peak, and change the memory and CPU limits for one run.
The layout is detected once: v2 when ``/sys/fs/cgroup/cgroup.controllers`` exists (unified
hierarchy), v1 otherwise (one hierarchy per controller, as on these hybrid machines, where the
``unified`` mount carries no controllers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
from pathlib import Path

from sandlot.runtime import errors, models, mounts

log = logging.getLogger("sandlot.runtime")

CPU_PERIOD_US = 100_000
"""The CFS period of every sandbox (`sandlot.runtime.oci` hands it to runc): the CPU limit is
a quota of cores times this."""

__all__ = [
    "CPU_PERIOD_US",
    "CgroupUsage",
    "cgroup_dirs",
    "criu_yard",
    "favor_dynamic_moves",
    "is_v2",
    "kill_all",
    "members",
    "remove",
    "reset_peak",
    "set_limits",
    "thaw",
    "usage",
]

ROOT = Path("/sys/fs/cgroup")
# "systemd" (name=systemd) is not a controller, but runc makes the cgroup there too.
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "devices", "cpuset", "systemd")


@functools.cache
def is_v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def favor_dynamic_moves() -> bool:
    """Make moving a process into a cgroup cheap on this host, for as long as it is up.

    The first move after a quiet spell (runc's create, restore and fork each make one) takes
    the kernel's cgroup_threadgroup_rwsem for write, which waits for an RCU grace period
    first: 10.8 ms p50 here, on the critical path of all three. The cgroup2 mount option
    ``favordynmods`` (Linux 6.0) switches that lock, which v1 and v2 hierarchies share, to
    the mode where a writer does not wait (0.17 ms), at the cost of a slower path for fork
    and exit that did not show in a fork/exec benchmark. The host's cgroup2 mount (the
    unified one of a v1 host) is remounted with it, its other options kept. Without a
    cgroup2 mount, or on an older kernel, moves stay slow. Whether the option is on is
    returned."""
    with open("/proc/self/mountinfo") as f:
        found = [line.split(" - ", 1) for line in f if " - cgroup2 " in line]
    if not found:
        log.info("cgroup moves stay slow: this host has no cgroup2 mount to set favordynmods on")
        return False
    fields, rest = found[0]
    target, mount_options, options = *fields.split()[4:6], rest.split()[2]
    if "favordynmods" in options.split(","):
        return True
    try:
        mounts.remount(target, mount_options, f"{options},favordynmods")
    except errors.RuntimeDriverError as exc:
        log.info("cgroup moves stay slow on this kernel (%s)", exc)
        return False
    return True


def criu_yard(dest: Path) -> None:
    """Make ``dest`` a CRIU cgroup yard (``--cgroup-yard``) of this host's own hierarchies:
    one symlink per hierarchy this process is in, named as CRIU names it (its controllers
    joined by commas, ``name=`` dropped, ``unified`` for cgroup2), to where it is mounted.

    Without a yard CRIU mounts every hierarchy afresh in a directory of its own at each
    restore, and a cgroup2 mount made more than a few ms after the last one waits for an
    RCU grace period (6-20 ms here), on the critical path of every resume and fork. It also
    drops the host's cgroup2 mount options (``favordynmods``, see `favor_dynamic_moves`)."""
    with open("/proc/self/mountinfo") as f:
        mounted = [(fields.split()[4], rest.split()[0], set(rest.split()[2].split(",")))
                   for fields, rest in (line.split(" - ", 1) for line in f)]
    links: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            names = line.strip().split(":", 2)[1].split(",")
            for target, fstype, options in mounted:
                if (names == [""] and fstype == "cgroup2") or (fstype == "cgroup" and options >= set(names)):
                    links[",".join(n.removeprefix("name=") or "unified" for n in names)] = target
                    break
    dest.mkdir(mode=0o700, exist_ok=True)
    for name, target in links.items():
        link = dest / name
        if not (link.is_symlink() and os.readlink(link) == target):
            link.unlink(missing_ok=True)
            link.symlink_to(target)


@dataclasses.dataclass(frozen=True)
class CgroupUsage:
    cpu_usage_ns: int
    memory_bytes: int
    pids: int
    memory_peak_bytes: int
    oom_kills: int


def cgroup_dirs(path: str) -> list[Path]:
    """The directories that make up the cgroup ``path`` (one per v1 controller) that exist."""
    rel = path.lstrip("/")
    candidates = [ROOT / rel] if is_v2() else [ROOT / c / rel for c in _V1_CONTROLLERS]
    return [c for c in candidates if c.is_dir()]


def usage(path: str) -> CgroupUsage:
    rel = path.lstrip("/")
    if is_v2():
        base = ROOT / rel
        cpu = int(_keyed(base / "cpu.stat")["usage_usec"]) * 1000
        memory = _int(base / "memory.current")
        pids = _int(base / "pids.current")
        # memory.peak came with Linux 5.19; before it the best figure is the current one.
        peak = _int(base / "memory.peak") if (base / "memory.peak").exists() else memory
        ooms = int(_keyed(base / "memory.events").get("oom_kill", 0))
    else:
        cpu = _int(ROOT / "cpuacct" / rel / "cpuacct.usage")
        memory = _v1_memory(ROOT / "memory" / rel)
        pids = _int(ROOT / "pids" / rel / "pids.current")
        peak = _int(ROOT / "memory" / rel / "memory.max_usage_in_bytes")
        ooms = int(_keyed(ROOT / "memory" / rel / "memory.oom_control").get("oom_kill", 0))
    return CgroupUsage(cpu_usage_ns=cpu, memory_bytes=memory, pids=pids, memory_peak_bytes=peak, oom_kills=ooms)


def _v1_memory(base: Path) -> int:
    # usage_in_bytes counts reclaimable page cache; report what `free` would call used.
    stat = _keyed(base / "memory.stat")
    return max(0, _int(base / "memory.usage_in_bytes") - int(stat.get("total_inactive_file", 0)))


async def kill_all(path: str, *, but: int | None = None, timeout: float = 5.0) -> None:
    """SIGKILL every process of the cgroup, or every one but ``but`` (its init), and wait
    until they are gone.

    The cgroup is frozen first (a checkpoint has frozen it already), so that a process forking
    as fast as it can (a fork bomb) cannot make a child between the look at ``cgroup.procs``
    and the kill: every process then has SIGKILL pending when it is thawed, and dies before it
    runs another instruction. A pause relies on that: what CRIU dumped must be the last thing
    its processes did, to memory and to disk.

    With ``but``, gone means reaped: the pids count drops to one once init has waited for them
    all (a runner sandbox's next run gets its whole pids limit). Without it, gone means exited:
    ``cgroup.procs`` is empty, while the zombie of init waits for its parent (us, or whoever
    adopted it after a restart) to reap it.
    """
    rel = path.lstrip("/")
    freeze, frozen, thawed = _freezer(path)
    if is_v2():
        procs, pids = ROOT / rel / "cgroup.procs", ROOT / rel / "pids.current"
    else:
        procs, pids = ROOT / "pids" / rel / "cgroup.procs", ROOT / "pids" / rel / "pids.current"

    def gone() -> bool:
        return _int(pids) <= 1 if but is not None else not _read(procs).split()

    if gone():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    _write(freeze, frozen)
    try:
        while not _is_frozen(freeze):
            if loop.time() > deadline:
                raise TimeoutError(f"cgroup {path} did not freeze in {timeout} s")
            await asyncio.sleep(0.001)
        for pid in _read(procs).split():
            if int(pid) != but:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    finally:
        _write(freeze, thawed)
    while not gone():
        if loop.time() > deadline:
            raise TimeoutError(f"cgroup {path} still holds {_int(pids)} tasks {timeout} s after SIGKILL")
        await asyncio.sleep(0.001)


def members(path: str) -> set[int]:
    """The pids of the cgroup's processes (none when it does not exist)."""
    rel = path.lstrip("/")
    procs = ROOT / rel / "cgroup.procs" if is_v2() else ROOT / "pids" / rel / "cgroup.procs"
    return {int(pid) for pid in _read(procs).split()} if procs.exists() else set()


def thaw(path: str) -> None:
    """Let the processes of a frozen cgroup run again."""
    freeze, _, thawed = _freezer(path)
    _write(freeze, thawed)


def _freezer(path: str) -> tuple[Path, str, str]:
    """The file that freezes the cgroup ``path``, and what to write to it to freeze and thaw."""
    rel = path.lstrip("/")
    if is_v2():
        return ROOT / rel / "cgroup.freeze", "1", "0"
    return ROOT / "freezer" / rel / "freezer.state", "FROZEN", "THAWED"


def _is_frozen(freeze: Path) -> bool:
    if freeze.name == "cgroup.freeze":
        return _keyed(freeze.with_name("cgroup.events")).get("frozen", "0").strip() == "1"
    return _read(freeze).strip() == "FROZEN"


def reset_peak(path: str) -> None:
    """Start the memory peak over from what is in use now (cgroup v1; v2 keeps the peak since
    the cgroup was made, as its ``memory.peak`` resets only for the file descriptor that
    wrote it)."""
    if not is_v2():
        _write(ROOT / "memory" / path.lstrip("/") / "memory.max_usage_in_bytes", "0")


def set_limits(path: str, limits: models.Limits) -> None:
    """Change the memory (no swap, as runc set it up), CPU and pids limits of a running cgroup."""
    rel = path.lstrip("/")
    memory = limits.memory_mb * 1024 * 1024
    quota = int(limits.cpu_cores * CPU_PERIOD_US)
    if is_v2():
        _write(ROOT / rel / "memory.max", str(memory))
        _write(ROOT / rel / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        _write(ROOT / rel / "pids.max", str(limits.pids))
        return
    _write(ROOT / "pids" / rel / "pids.max", str(limits.pids))
    base = ROOT / "memory" / rel
    # memory+swap may never be below memory: raise it first when growing, last when shrinking.
    order = ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    if memory < _int(base / "memory.limit_in_bytes"):
        order.reverse()
    for name in order:
        if (base / name).exists():
            _write(base / name, str(memory))
    _write(ROOT / "cpu" / rel / "cpu.cfs_period_us", str(CPU_PERIOD_US))
    _write(ROOT / "cpu" / rel / "cpu.cfs_quota_us", str(quota))


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


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
            with contextlib.suppress(OSError):
                os.rmdir(sub)
