"""The live sandboxes in memory: found, listed and locked here, changed by the manager.

Reads (``GET /sandboxes/{id}``, lists, the sandbox plane's resolver) never touch the database:
one server process owns a data directory, so this table and the store agree, and the control
plane's hot path is a dict lookup. A sandbox being ended is gone from every read at once, before
the runtime and the store have let it go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from datetime import datetime

from sandlot.lifecycle import errors, paging, records
from sandlot.runtime import models, target

__all__ = ["SandboxTable"]


class SandboxTable:
    def __init__(self) -> None:
        self.sandboxes: dict[str, records.LiveSandbox] = {}
        self._ending: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def add(self, made: Iterable[records.LiveSandbox]) -> None:
        self.sandboxes.update((s.id, s) for s in made)

    def is_live(self, sandbox_id: str) -> bool:
        """In the table and not being ended."""
        return sandbox_id in self.sandboxes and sandbox_id not in self._ending

    def get(self, team_id: str, sandbox_id: str) -> records.LiveSandbox:
        """The team's live sandbox; a request naming it, so activity (see `timers`)."""
        sbx = self.sandboxes.get(sandbox_id)
        if sbx is None or sbx.team_id != team_id or sandbox_id in self._ending:
            raise errors.SandboxNotFound(sandbox_id)
        sbx.touch()
        return sbx

    def reachable(self, sandbox_id: str) -> records.LiveSandbox:
        """The sandbox, if the sandbox plane can reach it: running, or paused with auto-resume."""
        sbx = self.sandboxes.get(sandbox_id)
        if (
            sbx is None
            or sandbox_id in self._ending
            or not (sbx.state == models.SandboxState.RUNNING or sbx.auto_resume)
        ):
            raise target.SandboxGone(sandbox_id)
        return sbx

    def in_state(self, state: models.SandboxState) -> list[records.LiveSandbox]:
        """The live sandboxes in ``state``."""
        return [
            s
            for s in self.sandboxes.values()
            if s.state == state and s.id not in self._ending
        ]

    def list(
        self,
        team_id: str,
        *,
        metadata: Mapping[str, str] | None,
        states: Collection[str] | None,
        order: str,
        started_after: datetime | None,
        template: str | None,
        limit: int,
        next_token: str | None,
    ) -> tuple[list[records.LiveSandbox], str | None]:
        """See `SandboxManager.list`."""
        found = [
            s
            for s in self.sandboxes.values()
            if s.team_id == team_id
            and s.id not in self._ending
            and (not states or s.state in states)
            and (started_after is None or s.started_at > started_after)
            and (template is None or s.template == template)
            and all(s.metadata.get(k) == v for k, v in (metadata or {}).items())
        ]
        return paging.page(
            found, lambda s: (s.started_at, s.id), order=order, limit=limit, next_token=next_token
        )

    def lock(self, sandbox_id: str) -> asyncio.Lock:
        """One pause, resume, fork, snapshot, restart or kill of a sandbox at a time."""
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def changing(self, sandbox_id: str) -> bool:
        """Whether the sandbox is being paused, resumed, forked, snapshotted, restarted or ended."""
        lock = self._locks.get(sandbox_id)
        return lock is not None and lock.locked()

    @contextlib.asynccontextmanager
    async def turn(self, sbx: records.LiveSandbox, *, running_for: str | None = None) -> AsyncIterator[None]:
        """The sandbox's lock, once it is still live (it may have ended while this waited) and,
        with ``running_for`` (what is to be done: ``forking``...), running."""
        async with self.lock(sbx.id):
            if not self.is_live(sbx.id):
                raise errors.SandboxNotFound(sbx.id)
            if running_for is not None and sbx.state != models.SandboxState.RUNNING:
                raise errors.Conflict(f"sandbox {sbx.id!r} is paused: resume it before {running_for} it")
            yield

    def start_ending(self, sandbox_id: str) -> bool:
        """Hide a live sandbox from every read, to end it; False when it is not live."""
        if not self.is_live(sandbox_id):
            return False
        self._ending.add(sandbox_id)
        return True

    def remove(self, sandbox_id: str) -> None:
        """The sandbox is ended (or failed to be): forget it."""
        self.sandboxes.pop(sandbox_id, None)
        self._locks.pop(sandbox_id, None)
        self._ending.discard(sandbox_id)
