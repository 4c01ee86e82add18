"""The figures of running sandboxes: metrics points (``GET /sandboxes/{id}/metrics``) and what
admission counts (the disk a sandbox has written, the memory it uses).

A metrics point's CPU use is the share of its cores a sandbox used since the previous point
(or since it started), so the meter keeps each sandbox's last CPU reading; a sandbox paused,
restarted or ended starts again (`Meter.forget`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from sandlot.lifecycle import admission, errors, records
from sandlot.runtime import base, models
from sandlot.runtime import errors as runtime_errors

__all__ = ["Meter", "Metric"]

_WRITTEN_TTL = 1.0
"""Seconds a running sandbox's disk figure is used for admission before it is read again."""


@dataclasses.dataclass(frozen=True)
class Metric:
    timestamp: datetime
    cpu_count: int
    cpu_used_pct: float
    mem_used: int
    mem_total: int
    mem_cache: int
    disk_used: int
    disk_total: int


class Meter:
    """Reads the figures of the sandboxes of one driver."""

    def __init__(self, driver: base.RuntimeDriver) -> None:
        self.driver = driver
        self._cpu: dict[str, tuple[float, int]] = {}
        """Each sandbox's CPU time at its last point, and when (`time.monotonic`)."""
        self._written: dict[str, tuple[float, int]] = {}
        """Each running sandbox's disk bytes written, and when read (`disk_written`)."""

    def forget(self, sandbox_id: str) -> None:
        """Drop what is known of a sandbox whose processes stopped (paused, restarted, ended)."""
        self._cpu.pop(sandbox_id, None)
        self._written.pop(sandbox_id, None)

    async def read(self, sbx: records.LiveSandbox, *, changing: Callable[[], bool]) -> list[Metric]:
        """One point, now, of a sandbox (none while it is paused, or ``changing``: being
        paused, resumed, forked or ended, when its figures cannot be read)."""
        if sbx.state != models.SandboxState.RUNNING:
            return []  # a paused sandbox uses no CPU or memory, and is not woken to say so
        try:
            stats = await self.driver.stats(sandbox_id=sbx.id)
        except runtime_errors.SandboxNotFound:
            raise errors.SandboxNotFound(sbx.id) from None
        except runtime_errors.RuntimeDriverError as exc:
            if sbx.state != models.SandboxState.RUNNING or changing():
                return []
            raise errors.RuntimeFailure(f"reading the sandbox's figures failed: {exc}") from exc
        return [self._point(sbx, stats)]

    def _point(self, sbx: records.LiveSandbox, stats: models.Stats) -> Metric:
        """One metrics point of ``stats``: CPU use since the previous point (or the start)."""
        now_mono = time.monotonic()
        then, cpu_before = self._cpu.get(
            sbx.id,
            (now_mono - max((records.now() - sbx.started_at).total_seconds(), 1e-3), 0),
        )
        self._cpu[sbx.id] = (now_mono, stats.cpu_usage_ns)
        elapsed = max(now_mono - then, 1e-3)
        pct = 100.0 * (stats.cpu_usage_ns - cpu_before) / 1e9 / elapsed / max(stats.cpu_cores, 0.01)
        return Metric(
            timestamp=records.now(),
            cpu_count=max(1, math.ceil(stats.cpu_cores)),
            cpu_used_pct=round(min(max(pct, 0.0), 100.0), 2),
            mem_used=stats.memory_bytes,
            mem_total=stats.memory_limit_bytes,
            mem_cache=0,
            disk_used=stats.disk_bytes,
            disk_total=stats.disk_limit_bytes,
        )

    async def stats(self, sbx: records.LiveSandbox) -> models.Stats | None:
        """The sandbox's figures now; None when the runtime cannot say (it is being paused)."""
        try:
            return await self.driver.stats(sandbox_id=sbx.id)
        except runtime_errors.RuntimeDriverError:
            return None

    async def disk_written(self, sbx: records.LiveSandbox) -> int:
        """Bytes of its disk the sandbox has written (0 when unknown: all of it counts as
        reserved), read at most once a second: a burst of creates would otherwise read the
        figures of every running sandbox for each (~0.2 ms a sandbox)."""
        seen = self._written.get(sbx.id)
        if seen is None or time.monotonic() - seen[0] > _WRITTEN_TTL:
            stats = await self.stats(sbx)
            seen = self._written[sbx.id] = (time.monotonic(), stats.disk_bytes if stats else 0)
        return seen[1]

    async def usage(self, running: Sequence[records.LiveSandbox], team_stored: int) -> admission.Usage:
        """What the ``running`` sandboxes hold now, for `admission.Admission.admit`."""
        written = await asyncio.gather(*(self.disk_written(s) for s in running))
        now = records.now()
        return admission.Usage(
            reserved=sum(max(0, s.disk_mb * admission.MiB - w) for s, w in zip(running, written, strict=True)),
            memory_mb=sum(s.memory_mb for s in running),
            retry_after=min(((s.end_at - now).total_seconds() for s in running), default=60),
            team_stored=team_stored,
        )

    async def memory_in_use(self, sbx: records.LiveSandbox) -> int:
        """Bytes of memory the sandbox uses (its limit when unknown): about what a checkpoint
        of it takes on disk."""
        stats = await self.stats(sbx)
        return stats.memory_bytes if stats else sbx.memory_mb * admission.MiB
