"""The server-side timer that gives every sandbox its on-timeout action (kill or pause) at its
end time, or when it has been idle for its idle timeout.

One asyncio task sleeps until the earliest such moment (at most a second, and woken early when
a sandbox appears or its end time moves: `SandboxManager.changed`), then acts on whatever is
due (`SandboxManager.end_due`). End times live in the store, so a restart picks the timers up
where they were; a sandbox whose end passed while the server was down is ended on the first
tick. Idle clocks live in memory only and start again at a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sandlot.lifecycle import manager as lifecycle

__all__ = ["Timers"]

logger = logging.getLogger("sandlot.lifecycle.timers")

MAX_SLEEP = 1.0


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
