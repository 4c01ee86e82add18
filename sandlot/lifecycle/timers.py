"""The server-side timer that gives every sandbox its on-timeout action (kill or pause) at its
end time, or when it has been idle for its idle timeout.

One asyncio task sleeps until the earliest such moment (at most a second, and woken early when
a sandbox appears or its end time moves: `SandboxManager.changed`), then acts on whatever is
due (`SandboxManager.end_due`). End times live in the store, so a restart picks the timers up
where they were; a sandbox whose end passed while the server was down is ended on the first
tick. Idle clocks live in memory only and start again at a restart.

Idle timeouts: a sandbox is active while requests name it (every control-plane call that takes
its id, `SandboxManager.get`; every sandbox-plane request and every chunk streamed to or from
it, `LiveSandbox.touch`) and while a command started through the API runs. Runs are not
events, so a sandbox that would otherwise be idle is asked for its processes
(`RuntimeDriver.processes`) on every tick (a second) for as long as any runs; idleness counts
from the last tick that saw one. After a server restart every sandbox counts as active from
the start.

A paused sandbox has no timer but the retention: it is ended once its checkpoint is older than
``retention_days`` (`Deadlines.expire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sandlot.config import AdmissionSettings
from sandlot.lifecycle import records, snapshots, table
from sandlot.runtime import base, models
from sandlot.runtime import errors as runtime_errors

if TYPE_CHECKING:  # the manager holds the deadlines: the timer only needs its type
    from sandlot.lifecycle import manager as lifecycle

__all__ = ["Deadlines", "Timers"]

logger = logging.getLogger("sandlot.lifecycle.timers")

MAX_SLEEP = 1.0
BUSY_POLL = 1.0
"""Seconds between looks at the processes of a sandbox that is idle but for a command."""
_PROCESSES_TIMEOUT = 5.0
"""Seconds a look at a sandbox's processes may take before it counts as busy."""


def _idle(sbx: records.LiveSandbox) -> bool:
    """Whether the sandbox has been without activity for its idle timeout (it has one)."""
    limit = sbx.idle_timeout
    return limit is not None and limit > 0 and time.monotonic() - sbx.last_active >= limit


@dataclasses.dataclass
class Deadlines:
    """What is due and when: end times, idle clocks, and the retention of paused sandboxes
    and snapshots (`SandboxManager.end_due` and `SandboxManager.expire`)."""

    sandboxes: table.SandboxTable
    driver: base.RuntimeDriver
    store: snapshots.SnapshotStore
    settings: AdmissionSettings
    time_out: Callable[[records.LiveSandbox], Awaitable[None]]
    """Gives a running sandbox its on-timeout action (kill or pause)."""
    end: Callable[[str], Awaitable[None]]
    """Ends a sandbox."""

    async def end_due(self) -> float | None:
        """Time out every running sandbox past its end time or idle for its idle timeout, and
        `expire`; seconds until the next such moment, if any."""
        now = records.now()
        running = self.sandboxes.in_state(models.SandboxState.RUNNING)
        due = [s for s in running if s.end_at <= now]
        # A sandbox idle but for a command, or idle until the last look, is asked again.
        quiet = [s for s in running if s.idle_timeout and s.end_at > now and (s.busy or _idle(s))]
        busy = await asyncio.gather(*(self._busy(s) for s in quiet))
        idle = [
            s
            for s, running_now in zip(quiet, busy, strict=True)
            if not running_now
            and s.state == models.SandboxState.RUNNING  # not paused or ended while we asked
            and self.sandboxes.is_live(s.id)
            and _idle(s)
        ]
        for s in idle:
            logger.info("lifecycle.idle %s: nothing for %d s", s.id, s.idle_timeout)
        if due or idle:
            await asyncio.gather(*(self.time_out(s) for s in (*due, *idle)))
        waits = await self.expire()
        now, mono = records.now(), time.monotonic()
        for s in self.sandboxes.in_state(models.SandboxState.RUNNING):
            waits.append((s.end_at - now).total_seconds())
            if s.idle_timeout:
                waits.append(BUSY_POLL if s.busy else s.last_active + s.idle_timeout - mono)
        return max(min(waits), 0.0) if waits else None

    async def expire(self) -> list[float]:
        """End paused sandboxes whose checkpoint, and delete snapshots that, are older than the
        retention; seconds until the next of them is due."""
        retention = timedelta(days=self.settings.retention_days)
        now = records.now()
        made = [
            (s, s.paused_at)
            for s in self.sandboxes.in_state(models.SandboxState.PAUSED)
            if s.paused_at is not None
        ]
        old = [s for s, at in made if at + retention <= now]
        for s in old:
            logger.info("lifecycle.retention %s: paused since %s, ending it", s.id, s.paused_at)
        await asyncio.gather(*(self.end(s.id) for s in old))
        oldest = await self.store.expire(now - retention)
        waits = [(at + retention - now).total_seconds() for _, at in made if at + retention > now]
        if oldest is not None:
            waits.append((oldest + retention - now).total_seconds())
        return waits

    async def _busy(self, sbx: records.LiveSandbox) -> bool:
        """Whether a command started through the API runs in the sandbox (then it is active
        now); a sandbox that cannot say, or is being paused or forked, counts as busy."""
        try:
            if self.sandboxes.changing(sbx.id):
                running = True
            else:
                found = await asyncio.wait_for(
                    self.driver.processes(sandbox_id=sbx.id), _PROCESSES_TIMEOUT
                )
                running = bool(found)
        except (runtime_errors.RuntimeDriverError, TimeoutError):
            running = True
        sbx.busy = running
        if running:
            sbx.touch()
        return running


class Timers:
    """Example:
    >>> timers = Timers(manager)
    >>> timers.start()
    >>> await timers.aclose()
    """

    def __init__(self, manager: lifecycle.SandboxManager) -> None:
        self.manager = manager
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="sandlot-timers"
        )

    async def _run(self) -> None:
        changed = self.manager.changed
        while True:
            changed.clear()
            try:
                wait = await self.manager.end_due()
            except Exception:
                logger.exception("timers.tick.failed")
                wait = MAX_SLEEP
            wait = MAX_SLEEP if wait is None else min(wait, MAX_SLEEP)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
