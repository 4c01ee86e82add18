"""Admission control: whether the host can give what a create, resume, pause, snapshot or fork
asks, decided before the runtime is asked to do it (issue 11, item 5).

What can be promised past what the host holds, and how each is refused:

* **Per-sandbox maximums** (`check_limits`): a create asking more CPU, memory or disk than the
  server's maximum is refused with 400 naming the cap. It used to be clamped silently, and a
  client that asked for 16 GiB and got 8 found out when its program was OOM-killed.
* **Disk** (507): a sandbox's disk is a sparse image that grows to its limit without asking, so
  the part of every running sandbox's disk it has not written yet counts as taken (reserved).
  An operation is refused when the data filesystem's free space, less those reservations and
  less its own ask, would fall under the floor: a create or fork asks its disk limit, a resume
  or restart of a paused sandbox its disk limit (its disk can grow again), a pause its memory
  in use (a checkpoint is about its RSS), a snapshot that and the part of its disk it has
  written (the snapshot copies it).
  Without this one team fills the filesystem the database and every other team's disk live on.
* **Memory** (503 with ``Retry-After``): the memory limits of running sandboxes together stay
  within ``memory_overcommit`` times the host's memory (create, fork, and a resume or restart
  of a paused sandbox ask their memory limits). The wait offered is until the first
  running sandbox is due to end, at most a minute.
* **Team storage** (507): a team's pause checkpoints and snapshots together stay within its
  quota; a pause or snapshot that would go past it is refused, and the message says used/quota.

Asks being served are held (`Admission.admit`) until the manager counts what they made, so two
creates at once cannot both take the last room.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from sandlot.config import AdmissionSettings
from sandlot.lifecycle import errors
from sandlot.runtime import models

__all__ = ["Admission", "Ask", "Usage", "check_limits", "host_memory_bytes"]

MiB = 1 << 20
_MAX_RETRY_AFTER = 60

_WIRE_NAMES = {"cpu_cores": "cpuCount", "memory_mb": "memoryMB", "disk_mb": "diskSizeMB", "pids": "pids"}
"""How a create's body names each limit, for messages that tell the client what to change."""


def check_limits(limits: models.Limits, maximum: models.Limits, *, source: str = "") -> None:
    """`errors.InvalidRequest` naming every limit above the per-sandbox maximum."""
    over = [
        f"{_WIRE_NAMES[f.name]} {getattr(limits, f.name):g} is above this server's maximum of "
        f"{getattr(maximum, f.name):g} per sandbox"
        for f in dataclasses.fields(models.Limits)
        if getattr(limits, f.name) > getattr(maximum, f.name)
    ]
    if over:
        raise errors.InvalidRequest(source + "; ".join(over))


def host_memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class Ask:
    """What one operation wants, in bytes and MiB of memory limit."""

    what: str
    """Names the operation in messages: ``"this create"``, ``"pausing it"``."""
    disk: int = 0
    """Bytes it may write to the filesystem of ``path``."""
    path: Path | None = None
    """Where it writes: the runtime's data dir for disks, the snapshot store for checkpoints."""
    memory_mb: int = 0
    """Memory limits it starts running."""
    stored: int = 0
    """Bytes it adds to the team's checkpoints and snapshots."""


@dataclasses.dataclass(frozen=True)
class Usage:
    """What is promised already, as the manager counts it."""

    reserved: int = 0
    """Bytes of running sandboxes' disks they have not written yet (on the runtime's data dir)."""
    memory_mb: int = 0
    """Memory limits of running sandboxes."""
    retry_after: float = _MAX_RETRY_AFTER
    """Seconds until the first running sandbox is due to end."""
    team_stored: int = 0
    """Bytes the team's checkpoints and snapshots take."""


class Admission:
    """Decides asks against the settings and the host; see the module.

    Example:
        >>> admission = Admission(settings.admission, data_dir=settings.runtime.data_dir)
        >>> with admission.admit(Ask("this create", disk=2 << 30, path=data_dir, memory_mb=512), usage):
        ...     await driver.create(spec=spec)
    """

    def __init__(self, settings: AdmissionSettings, *, data_dir: Path, host_memory: int | None = None) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.host_memory = host_memory_bytes() if host_memory is None else host_memory
        self._held_disk = 0
        self._held_memory_mb = 0

    @contextlib.contextmanager
    def admit(self, ask: Ask, usage: Usage) -> Iterator[None]:
        """Refuse ``ask`` if the host cannot take it on top of ``usage`` and the asks being
        served; else hold it until the block ends (by then the manager counts what it made)."""
        self._check_quota(ask, usage)
        self._check_memory(ask, usage)
        self._check_disk(ask, usage)
        self._held_disk += ask.disk
        self._held_memory_mb += ask.memory_mb
        try:
            yield
        finally:
            self._held_disk -= ask.disk
            self._held_memory_mb -= ask.memory_mb

    def _check_disk(self, ask: Ask, usage: Usage) -> None:
        if not ask.disk or ask.path is None:
            return
        st = os.statvfs(ask.path)
        free = st.f_bavail * st.f_frsize
        # Reservations are on the runtime's data dir; the snapshot store may be elsewhere.
        same = os.stat(ask.path).st_dev == os.stat(self.data_dir).st_dev
        reserved = (usage.reserved if same else 0) + self._held_disk
        floor = self.settings.disk_free_floor_mb * MiB
        if free - reserved - ask.disk >= floor:
            return
        raise errors.InsufficientStorage(
            f"not enough disk: {ask.what} needs {_mib(ask.disk)} MiB, and the server's data "
            f"filesystem has {_mib(free)} MiB free, {_mib(reserved)} MiB of it reserved for the "
            f"disks of running sandboxes; the server keeps {_mib(floor)} MiB free. Ask for less, "
            "or kill sandboxes and delete snapshots"
        )

    def _check_memory(self, ask: Ask, usage: Usage) -> None:
        if not ask.memory_mb:
            return
        cap = int(self.host_memory * self.settings.memory_overcommit) // MiB
        committed = usage.memory_mb + self._held_memory_mb
        if committed + ask.memory_mb <= cap:
            return
        raise errors.Unavailable(
            f"the server's memory is fully committed: running sandboxes hold {committed} MiB of "
            f"memory limits of the {cap} MiB it gives out, and {ask.what} asks {ask.memory_mb} MiB "
            "more; retry later, or ask for less memoryMB",
            retry_after=max(1, min(_MAX_RETRY_AFTER, round(usage.retry_after))),
        )

    def _check_quota(self, ask: Ask, usage: Usage) -> None:
        if not ask.stored:
            return
        quota = self.settings.team_storage_quota_mb * MiB
        if usage.team_stored + ask.stored <= quota:
            return
        raise errors.InsufficientStorage(
            f"team storage quota exceeded: the team's checkpoints and snapshots use "
            f"{_mib(usage.team_stored)} MiB of its {_mib(quota)} MiB quota, and {ask.what} needs "
            f"about {_mib(ask.stored)} MiB more; delete snapshots or kill paused sandboxes"
        )


def _mib(n: int) -> int:
    """Bytes as whole MiB, rounded up (a floor is never shown as met when it is not)."""
    return -(-n // MiB)
