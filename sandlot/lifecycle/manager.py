"""The sandbox state machine on top of a runtime driver and the store.

Every live sandbox (running or paused) is held in memory as a `LiveSandbox`, loaded from the
store at start and written through on every change: reads (``GET /sandboxes/{id}``, lists,
the sandbox plane's `resolve`) never touch the database, which keeps the control plane's hot
path to a dict lookup. One server process owns a data directory, so memory and store agree.

A server restart keeps sandboxes running: `start` adopts what the runtime still holds
(`RuntimeDriver.reconcile` with the store's live ids), marks the rest killed, and the timers
end whatever passed its end time while the server was down. A server killed in the middle of
an operation is safe too: the runtime finishes or undoes what it was doing to each sandbox,
`start` makes the store say what the runtime holds (running or paused), and copies and
snapshots reach the store only once whole, so a half-made one is nobody's and is removed.

Pause keeps memory: the driver checkpoints the sandbox's processes (CRIU) into the snapshot
store (`sandlot.lifecycle.snapshots`), and the sandbox holds no memory and no CPU until it is
resumed. A paused sandbox has no timer: it is kept until it is resumed or killed. Its end time
stays what it was at pause (info and list show it, and never move it); a resume gives it a new
one. Killing a sandbox removes its checkpoints; a resume removes the one it restored from. A
paused sandbox stays paused over a server restart (the store says ``paused``, the driver's
state.json names the checkpoint) and can be resumed after.

A sandbox created with auto-resume is resumed by the first sandbox-plane request that carries
its access token (`resolve`), and then lives as long as it was created to (``timeout``) again.

Idle timeouts: a sandbox is active while requests name it (every control-plane call that takes
its id, `get`; every sandbox-plane request and every chunk streamed to or from it,
`LiveSandbox.touch`) and while a command started through the API runs. Runs are not events, so
a sandbox that would otherwise be idle is asked for its processes (`RuntimeDriver.processes`)
on every timer tick (a second) for as long as any runs; idleness counts from the last tick
that saw one. After a server restart every sandbox counts as active from the start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import math
import re
import secrets
import shutil
import time
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sandlot.config import Settings
from sandlot.lifecycle import admission, errors, paging, pools, snapshots
from sandlot.runtime import base, faults, models, target
from sandlot.runtime import errors as runtime_errors
from sandlot.store import db
from sandlot.store import models as store
from sandlot.store.vault import Vault

__all__ = ["LiveSandbox", "Metric", "SandboxManager", "new_sandbox_id", "sandbox_pool"]

logger = logging.getLogger("sandlot.lifecycle")

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CLIENT_ID = "sandlot"
_BUSY_POLL = 1.0
"""Seconds between looks at the processes of a sandbox that is idle but for a command."""
MiB = admission.MiB
_WRITTEN_TTL = 1.0
"""Seconds a running sandbox's disk figure is used for admission before it is read again."""


def new_sandbox_id() -> str:
    """20 lowercase letters and digits, like E2B's ids (a letter first)."""
    return secrets.choice(_ID_ALPHABET[:26]) + "".join(
        secrets.choice(_ID_ALPHABET) for _ in range(19)
    )


def sandbox_pool(driver: base.RuntimeDriver, settings: Settings) -> pools.Pool | None:
    """The warm pool of ``POST /sandboxes``: sandboxes of the ``base`` template with the default
    limits and network policy, the shape most creates ask for (None when sized 0)."""
    server, rt = settings.server, settings.runtime
    if server.pool_max <= 0:
        return None

    def make() -> models.SandboxSpec:
        return models.SandboxSpec(
            sandbox_id=new_sandbox_id(),
            limits=rt.default_limits.clamp(rt.max_limits),
            network=models.NetworkPolicy(internet=rt.internet_default),
        )

    return pools.Pool(
        driver, make, name="sandboxes", min_size=min(server.pool_min, server.pool_max),
        max_size=server.pool_max, reuse=False,
    )  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class LiveSandbox:
    """What the control plane knows of one live sandbox (a row of ``sandboxes``)."""

    id: str
    team_id: str
    template: str
    alias: str | None
    metadata: dict[str, str]
    env_vars: dict[str, str]
    started_at: datetime
    end_at: datetime
    state: str
    access_token: str | None
    secure: bool
    auto_pause: bool
    cpu_count: float
    memory_mb: int
    disk_mb: int
    pids: int
    allow_internet: bool
    network: dict[str, Any]
    auto_resume: bool
    timeout: int
    """Seconds of life it was made with; an auto-resume gives it that long again."""
    idle_timeout: int | None
    boot: str
    """``clean``, ``resume`` or ``fork``: how its current processes started."""
    last_active: float = dataclasses.field(default_factory=time.monotonic, compare=False)
    """`time.monotonic` of its last activity (not stored: a restart counts as activity)."""
    busy: bool = dataclasses.field(default=False, compare=False)
    """A command started through the API was running at the last idle check."""
    paused_at: datetime | None = dataclasses.field(default=None, compare=False)
    """When its checkpoint was made, while paused (not stored: at start, the checkpoint's
    time); it is ended once that is older than the retention."""

    def touch(self) -> None:
        """Record activity now (for the idle timeout)."""
        self.last_active = time.monotonic()

    @classmethod
    def from_record(cls, row: store.SandboxRecord, vault: Vault) -> LiveSandbox:
        """The sandbox of a row, its secrets opened with ``vault``."""
        token = row.access_token_sealed
        return cls(
            id=row.id, team_id=row.team_id, template=row.template, alias=row.alias,
            metadata=dict(row.metadata_), env_vars=vault.unseal(row.env_vars_sealed, row=f"sandboxes/{row.id}/env_vars"),
            started_at=row.started_at, end_at=row.end_at, state=row.state, secure=row.secure,
            access_token=None if token is None else vault.unseal(token, row=f"sandboxes/{row.id}/access_token"),
            auto_pause=row.auto_pause, cpu_count=row.cpu_count, memory_mb=row.memory_mb,
            disk_mb=row.disk_mb, pids=row.pids, allow_internet=row.allow_internet, network=dict(row.network),
            auto_resume=row.auto_resume, timeout=row.timeout, idle_timeout=row.idle_timeout, boot=row.boot,
        )  # fmt: skip

    def to_record(self, vault: Vault) -> store.SandboxRecord:
        """Its row, its secrets sealed with ``vault``."""
        token = self.access_token
        return store.SandboxRecord(
            id=self.id, team_id=self.team_id, template=self.template, alias=self.alias,
            metadata_=self.metadata, env_vars_sealed=vault.seal(self.env_vars, row=f"sandboxes/{self.id}/env_vars"),
            started_at=self.started_at, end_at=self.end_at, state=self.state, secure=self.secure,
            access_token_sealed=None if token is None else vault.seal(token, row=f"sandboxes/{self.id}/access_token"),
            auto_pause=self.auto_pause, cpu_count=self.cpu_count, memory_mb=self.memory_mb,
            disk_mb=self.disk_mb, pids=self.pids, allow_internet=self.allow_internet, network=self.network,
            auto_resume=self.auto_resume, timeout=self.timeout, idle_timeout=self.idle_timeout, boot=self.boot,
        )  # fmt: skip


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


class SandboxManager:
    """Create, find, list, extend and end sandboxes of teams.

    Example:
        >>> manager = SandboxManager(driver, database, settings)
        >>> await manager.start()
        >>> sbx = await manager.create(team_id, template="base", timeout=60)
        >>> await manager.kill(team_id, sbx.id)
    """

    def __init__(
        self,
        driver: base.RuntimeDriver,
        database: db.Database,
        settings: Settings,
        pool: pools.Pool | None = None,
    ) -> None:
        self.driver = driver
        self._checkpointing = base.capability(driver, base.Checkpointing)
        self._forking = base.capability(driver, base.Forking)
        self._snapshotting = base.capability(driver, base.Snapshotting)
        self._restarting = base.capability(driver, base.Restarting)
        self.database = database
        self.settings = settings
        self.pool = pool
        """Sandboxes made ahead of time that `create` hands out when one fits the request."""
        self._live: dict[str, LiveSandbox] = {}
        self._targets: dict[str, target.SandboxTarget] = {}
        self._cpu_samples: dict[str, tuple[float, int]] = {}
        self._written: dict[str, tuple[float, int]] = {}
        """Each running sandbox's disk bytes written, and when read (`_disk_written`)."""
        self._ending: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        rt = settings.runtime
        self.snapshots = snapshots.SnapshotStore(
            settings.state_dir / "snapshots", database, group=rt.userns_base if rt.userns else 0
        )
        """Pause checkpoints and named snapshots."""
        self.vault = Vault.open(settings.state_dir)
        """Seals the sandboxes' access tokens and environments in the store."""
        self.admission = admission.Admission(settings.admission, data_dir=rt.data_dir)
        """Refuses what the host cannot take (`sandlot.lifecycle.admission`)."""
        self.changed = asyncio.Event()
        """Set whenever an end time may have moved earlier or a sandbox appeared (timers wake)."""

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> models.ReconcileReport:
        """Load live sandboxes from the store, reconcile the runtime with them, mark the ones
        the runtime lost as killed, and make the store say what the runtime holds.

        A server killed in the middle of a pause or resume can leave the two apart: the
        runtime has checkpointed a sandbox the store still calls running (it is paused now),
        or restored one the store still calls paused (it is running now, ending its creation
        ``timeout`` from now, as after an auto-resume)."""
        await asyncio.to_thread(self.snapshots.open)
        rows = await asyncio.to_thread(self._load_live)
        report = await self.driver.reconcile(known=[r.id for r in rows])
        kept = set(report.kept)
        checkpoints = {}
        for row in rows:
            if row.id not in kept:
                continue
            self._live[row.id] = row
            info = await self.driver.info(sandbox_id=row.id)
            if info.checkpoint is not None:
                checkpoints[row.id] = info.checkpoint
            held = {models.SandboxState.PAUSED: "paused", models.SandboxState.RUNNING: "running"}.get(info.state)
            if held is not None and held != row.state:
                logger.warning("lifecycle.reconcile %s: the store said %s, the runtime holds it %s",
                               row.id, row.state, held)  # fmt: skip
                if held == "running":
                    self._running_again(row, "resume", row.timeout)
                else:
                    row.state = "paused"
                await asyncio.to_thread(self._save_state, row)
            if row.state == "paused":
                row.paused_at = await asyncio.to_thread(snapshots.made_at, info.checkpoint)
        if report.missing:
            logger.warning(
                "lifecycle.reconcile lost %d sandboxes: %s",
                len(report.missing),
                ", ".join(report.missing),
            )
            await asyncio.to_thread(self._mark_killed, report.missing)
        if report.removed:
            logger.info(
                "lifecycle.reconcile removed %d unowned sandboxes", len(report.removed)
            )
        # Checkpoints of sandboxes that are gone (killed while the server was down, or a
        # crash between a kill and the removal of its checkpoints), and every one a live
        # sandbox is not paused in (half-written, spent by a resume, left by a fork) are
        # nobody's.
        await self.snapshots.sweep(self._live, checkpoints)
        self.changed.set()
        return report

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        """One pause, resume, fork, snapshot, restart or kill of a sandbox at a time."""
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def _load_live(self) -> list[LiveSandbox]:
        with self.database.session() as session:
            rows = session.scalars(
                sa.select(store.SandboxRecord).where(
                    store.SandboxRecord.state != "killed"
                )
            )
            return [LiveSandbox.from_record(r, self.vault) for r in rows]

    def _mark_killed(self, ids: Collection[str]) -> None:
        with self.database.session() as session:
            session.execute(
                sa.update(store.SandboxRecord)
                .where(store.SandboxRecord.id.in_(list(ids)))
                .values(state="killed", ended_at=_now())
            )

    # -- create ----------------------------------------------------------------------------

    async def create(
        self,
        team_id: str,
        *,
        template: str = "base",
        timeout: int | None = None,
        metadata: Mapping[str, str] | None = None,
        env_vars: Mapping[str, str] | None = None,
        secure: bool = True,
        allow_internet: bool | None = None,
        allow_out: Iterable[str] = (),
        deny_out: Iterable[str] = (),
        auto_pause: bool = False,
        cpu_count: float | None = None,
        memory_mb: int | None = None,
        disk_mb: int | None = None,
        alias: str | None = None,
        auto_resume: bool = False,
        idle_timeout: int | None = None,
    ) -> LiveSandbox:
        """Make a sandbox; on any failure nothing of it is left in the runtime or the store.

        ``template`` names a template, or a snapshot of the team (``name`` for its newest
        version, ``name:vN``): a memory snapshot's sandbox goes on from the snapshot's
        processes (boot ``fork``), a filesystem snapshot's boots clean on a copy of its files.
        Either gets the snapshot's limits and environment (``env_vars`` added on top).
        """
        source = await self._snapshot_named(team_id, template)
        env = dict(env_vars or {})
        for name in env:
            if not _ENV_NAME.match(name):
                raise errors.InvalidRequest(
                    f"envVars: {name!r} is not a valid environment variable name"
                )
        for key, value in (*env.items(), *(metadata or {}).items()):
            if "\0" in key or "\0" in value:
                raise errors.InvalidRequest(
                    "envVars and metadata must not contain NUL characters"
                )
        if idle_timeout is not None and idle_timeout < 0:
            raise errors.InvalidRequest(f"idleTimeout must be 0 or more seconds, got {idle_timeout}")
        rt = self.settings.runtime
        if source is not None:
            if (cpu_count, memory_mb, disk_mb) != (None, None, None):
                raise errors.InvalidRequest(
                    "a sandbox made from a snapshot has the snapshot's cpuCount, memoryMB and "
                    "diskSizeMB: leave them out"
                )
            cpu_count, memory_mb, disk_mb = source.cpu_count, source.memory_mb, source.disk_mb
            env = {**self.vault.unseal(source.env_vars_sealed, row=f"snapshots/{source.id}/env_vars"), **env}
        defaults = rt.default_limits.clamp(rt.max_limits)
        try:
            limits = models.Limits(
                memory_mb=memory_mb if memory_mb is not None else defaults.memory_mb,
                cpu_cores=cpu_count if cpu_count is not None else defaults.cpu_cores,
                pids=source.pids if source is not None else defaults.pids,
                disk_mb=disk_mb if disk_mb is not None else defaults.disk_mb,
            )
            policy = models.NetworkPolicy(
                internet=rt.internet_default
                if allow_internet is None
                else allow_internet,
                allow=tuple(allow_out),
                deny=tuple(deny_out),
            )
        except ValueError as exc:
            raise errors.InvalidRequest(str(exc)) from None
        admission.check_limits(limits, rt.max_limits, source=f"snapshot {template!r}: " if source else "")
        seconds = self._clamp_timeout(timeout)
        now = _now()
        sbx = LiveSandbox(
            id=new_sandbox_id(), team_id=team_id, template=source.template if source else template,
            alias=alias, metadata=dict(metadata or {}), env_vars=env, started_at=now,
            end_at=now + timedelta(seconds=seconds), state="running",
            access_token=secrets.token_hex(24) if secure else None, secure=secure,
            auto_pause=auto_pause, cpu_count=limits.cpu_cores, memory_mb=limits.memory_mb,
            disk_mb=limits.disk_mb, pids=limits.pids, allow_internet=policy.internet,
            network={"allowOut": list(policy.allow), "denyOut": list(policy.deny)},
            auto_resume=auto_resume, timeout=seconds, idle_timeout=idle_timeout or None,
            boot="fork" if source is not None and source.memory else "clean",
        )  # fmt: skip
        spec = models.SandboxSpec(
            sandbox_id=sbx.id,
            template=sbx.template,
            limits=limits,
            network=policy,
            env=env,
            metadata=sbx.metadata,
        )
        ask = admission.Ask(
            "this create", disk=limits.disk_mb * MiB, path=rt.data_dir, memory_mb=limits.memory_mb
        )
        with self.admission.admit(ask, await self._usage()):
            return await self._make(sbx, spec, source, now)

    async def _make(
        self, sbx: LiveSandbox, spec: models.SandboxSpec, source: store.SnapshotRecord | None, now: datetime
    ) -> LiveSandbox:
        """Make ``sbx`` as ``spec`` says (from ``source`` when given) in the runtime, then in the
        store and memory; its lifetime counts from when it is made, not from ``now``."""
        try:
            if source is not None:
                snapshotting = self._snapshotting
                if snapshotting is None:
                    raise errors.NotSupported("this runtime cannot make sandboxes from snapshots")
                async with self.snapshots.using(source) as path:
                    await snapshotting.create_from_snapshot(spec=spec, source=path)
            elif (claimed := await self._claim(spec)) is not None:
                sbx.id = claimed
            else:
                await self.driver.create(spec=spec)
        except runtime_errors.TemplateNotFound as exc:
            raise errors.TemplateNotFound(str(exc)) from exc
        except ValueError as exc:
            raise errors.InvalidRequest(str(exc)) from exc
        except runtime_errors.RuntimeDriverError as exc:
            logger.exception("lifecycle.create.failed %s", sbx.id)
            raise errors.RuntimeFailure(f"creating the sandbox failed: {exc}") from exc
        # Its lifetime starts when it is usable, not when it was asked for.
        sbx.end_at = _now() + (sbx.end_at - now)
        sbx.touch()
        try:
            await asyncio.to_thread(self._insert, sbx)
        except BaseException:
            await asyncio.shield(self._destroy(sbx.id))
            raise
        self._live[sbx.id] = sbx
        self.changed.set()
        logger.info("lifecycle.create.complete %s team=%s", sbx.id, sbx.team_id)
        return sbx

    async def _claim(self, spec: models.SandboxSpec) -> str | None:
        """A sandbox of the warm pool made as ``spec`` asks (its id aside), with ``spec``'s
        network policy put in force; None when the pool cannot serve it. The environment
        needs nothing: the sandbox plane gives every process the sandbox's own."""
        pool = self.pool
        if pool is None or (spec.template, spec.limits) != (pool.spec.template, pool.spec.limits):
            return None
        claimed = pool.take_nowait()
        if claimed is not None and spec.network != pool.spec.network:
            try:
                await self.driver.update(sandbox_id=claimed, network=spec.network)
            except BaseException:
                await asyncio.shield(self._destroy(claimed))
                raise
        return claimed

    async def _snapshot_named(self, team_id: str, template: str) -> store.SnapshotRecord | None:
        """The snapshot ``template`` names (a team's snapshot is found before a template of
        the same name; `snapshot` refuses names of templates), or None for a template."""
        if ":" in template:
            found = await self.snapshots.find(team_id, template)
            if found is None:
                raise errors.SnapshotNotFound(template)
            return found
        if not snapshots.NAME.match(template):
            raise errors.InvalidRequest(
                f"templateID {template!r}: use 1-63 of a-z, 0-9, '.', '_' and '-' "
                "(and ':vN' for a snapshot's version)"
            )
        return await self.snapshots.find(team_id, template)

    def _insert(self, sbx: LiveSandbox) -> None:
        with self.database.session() as session:
            session.add(sbx.to_record(self.vault))

    def _clamp_timeout(self, timeout: int | None) -> int:
        server = self.settings.server
        if timeout is None:
            timeout = server.default_timeout
        if timeout < 0:
            raise errors.InvalidRequest(
                f"timeout must be 0 or more seconds, got {timeout}"
            )
        return min(timeout, server.max_timeout)

    # -- read ------------------------------------------------------------------------------

    def get(self, team_id: str, sandbox_id: str) -> LiveSandbox:
        """The team's live sandbox; a request naming it, so activity (see the module)."""
        sbx = self._live.get(sandbox_id)
        if sbx is None or sbx.team_id != team_id or sandbox_id in self._ending:
            raise errors.SandboxNotFound(sandbox_id)
        sbx.touch()
        return sbx

    def live(self) -> list[LiveSandbox]:
        """Every live sandbox of every team."""
        return list(self._live.values())

    def list(
        self,
        team_id: str,
        *,
        metadata: Mapping[str, str] | None = None,
        states: Collection[str] | None = None,
        order: str = "desc",
        started_after: datetime | None = None,
        template: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[LiveSandbox], str | None]:
        """One page of the team's live sandboxes by start time, and the token of the next page.

        The token is the position (start time and id) of the last item returned, so that a
        sandbox created or killed between two pages neither repeats nor hides another.
        """
        if order not in ("asc", "desc"):
            raise errors.InvalidRequest(f"order must be 'asc' or 'desc', got {order!r}")
        if not 1 <= limit <= 1000:
            raise errors.InvalidRequest(
                f"limit must be between 1 and 1000, got {limit}"
            )
        after = paging.decode(next_token) if next_token else None
        found = [
            s
            for s in self._live.values()
            if s.team_id == team_id
            and s.id not in self._ending
            and (not states or s.state in states)
            and (started_after is None or s.started_at > started_after)
            and (template is None or s.template == template)
            and all(s.metadata.get(k) == v for k, v in (metadata or {}).items())
        ]
        desc = order == "desc"
        found.sort(key=lambda s: (s.started_at, s.id), reverse=desc)
        if after is not None:
            found = [
                s
                for s in found
                if (
                    (s.started_at, s.id) < after
                    if desc
                    else (s.started_at, s.id) > after
                )
            ]
        page = found[:limit]
        token = paging.encode(page[-1].started_at, page[-1].id) if len(found) > limit else None
        return page, token

    # -- change ----------------------------------------------------------------------------

    async def kill(self, team_id: str, sandbox_id: str) -> None:
        self.get(team_id, sandbox_id)
        await self._end(sandbox_id)

    async def _end(self, sandbox_id: str) -> None:
        """End a sandbox: gone from every read at once, then from the runtime and the store."""
        if sandbox_id in self._ending or sandbox_id not in self._live:
            return
        self._ending.add(sandbox_id)
        try:
            async with self._lock(sandbox_id):
                await self._destroy(sandbox_id)
                await asyncio.to_thread(self.snapshots.remove_checkpoints, sandbox_id)
                await asyncio.to_thread(self._mark_killed, [sandbox_id])
        finally:
            self._live.pop(sandbox_id, None)
            self._targets.pop(sandbox_id, None)
            self._cpu_samples.pop(sandbox_id, None)
            self._written.pop(sandbox_id, None)
            self._locks.pop(sandbox_id, None)
            self._ending.discard(sandbox_id)
        logger.info("lifecycle.kill.complete %s", sandbox_id)

    async def _destroy(self, sandbox_id: str) -> None:
        try:
            await self.driver.destroy(sandbox_id=sandbox_id)
        except runtime_errors.SandboxNotFound:
            pass
        except runtime_errors.RuntimeDriverError:
            # What is left is nobody's now: the next reconcile (at start) removes it.
            logger.exception("lifecycle.destroy.failed %s", sandbox_id)

    async def set_timeout(
        self, team_id: str, sandbox_id: str, timeout: int
    ) -> LiveSandbox:
        """The sandbox now ends ``timeout`` seconds from now (earlier or later than before)."""
        sbx = self.get(team_id, sandbox_id)
        sbx.end_at = _now() + timedelta(seconds=self._clamp_timeout(timeout))
        await asyncio.to_thread(self._save_end, sbx)
        self.changed.set()
        return sbx

    async def connect(
        self, team_id: str, sandbox_id: str, timeout: int | None = None, *, memory: bool = True
    ) -> tuple[LiveSandbox, bool]:
        """The sandbox, running, and whether it was resumed for this.

        A running sandbox's end time moves to ``timeout`` from now if that is later (a
        connect never shortens a sandbox's life); a paused one is resumed and ends
        ``timeout`` (the server's default when absent) from now. Without ``memory`` (the
        e2b SDK's ``on_resume="reboot"``) a paused one is not restored but restarted: it
        boots clean on its files, its checkpoint unused; a running one is left as it is.
        """
        sbx = self.get(team_id, sandbox_id)
        if sbx.state == "paused":
            resumed = await self._resume(sbx, timeout, memory=memory)
            if resumed:
                return sbx, True
        end = _now() + timedelta(seconds=self._clamp_timeout(timeout))
        if end > sbx.end_at:
            sbx.end_at = end
            await asyncio.to_thread(self._save_end, sbx)
        return sbx, False

    async def resume(
        self, team_id: str, sandbox_id: str, timeout: int | None = None, *, memory: bool = True
    ) -> LiveSandbox:
        """Resume a paused sandbox (E2B's older ``POST /sandboxes/{id}/resume``), or without
        ``memory`` restart it clean on its files (as `connect`): 409 when it is running."""
        sbx = self.get(team_id, sandbox_id)
        if not await self._resume(sbx, timeout, memory=memory):
            raise errors.Conflict(f"sandbox {sandbox_id!r} is already running")
        return sbx

    async def _resume(self, sbx: LiveSandbox, timeout: int | None, *, memory: bool = True) -> bool:
        """Restore a paused sandbox (restart it, without ``memory``); False when it was
        running already."""
        timeout = self._clamp_timeout(timeout)
        if sbx.state != "paused":  # running, or gone: `_restore` says which
            return await self._restore(sbx, timeout, memory=memory)
        with self.admission.admit(self._waking(sbx, "resuming it"), await self._usage()):
            return await self._restore(sbx, timeout, memory=memory)

    def _waking(self, sbx: LiveSandbox, what: str) -> admission.Ask:
        """What a paused sandbox asks to run again: its memory, and room for its disk to grow."""
        return admission.Ask(what, disk=sbx.disk_mb * MiB, path=self.settings.runtime.data_dir, memory_mb=sbx.memory_mb)

    async def _restore(self, sbx: LiveSandbox, timeout: int, *, memory: bool) -> bool:
        """`_resume` once admitted."""
        if not memory:
            return await self._restart(sbx, timeout, if_paused=True)
        async with self._lock(sbx.id):
            if sbx.id not in self._live or sbx.id in self._ending:
                raise errors.SandboxNotFound(sbx.id)
            if sbx.state != "paused":
                return False
            checkpointing = self._checkpointing
            if checkpointing is None:
                raise errors.NotSupported("this runtime cannot restore checkpoints")
            started = time.monotonic()
            try:
                await checkpointing.restore(sandbox_id=sbx.id)
            except runtime_errors.RuntimeDriverError as exc:
                logger.exception("lifecycle.resume.failed %s", sbx.id)
                raise errors.RuntimeFailure(
                    f"resuming the sandbox failed (it stays paused): {exc}"
                ) from exc
            faults.crash_point("resume.committed")
            self._running_again(sbx, "resume", timeout)
            await asyncio.to_thread(self._save_state, sbx)
            faults.crash_point("resume.recorded")
            # The checkpoint is spent: the processes run on from it.
            await asyncio.to_thread(self.snapshots.remove_checkpoints, sbx.id)
        self.changed.set()
        logger.info(
            "lifecycle.resume.complete %s in %.0f ms",
            sbx.id,
            (time.monotonic() - started) * 1000,
        )
        return True

    def _running_again(self, sbx: LiveSandbox, boot: str, seconds: int) -> None:
        """After a resume or restart: running, booted so, ending ``seconds`` from now."""
        sbx.state, sbx.boot, sbx.busy, sbx.paused_at = "running", boot, False, None
        sbx.end_at = _now() + timedelta(seconds=seconds)
        sbx.touch()

    def _save_state(self, sbx: LiveSandbox) -> None:
        with self.database.session() as session:
            session.execute(
                sa.update(store.SandboxRecord)
                .where(store.SandboxRecord.id == sbx.id)
                .values(state=sbx.state, end_at=sbx.end_at, boot=sbx.boot)
            )

    def _save_end(self, sbx: LiveSandbox) -> None:
        with self.database.session() as session:
            session.execute(
                sa.update(store.SandboxRecord)
                .where(store.SandboxRecord.id == sbx.id)
                .values(end_at=sbx.end_at)
            )

    async def pause(self, team_id: str, sandbox_id: str) -> None:
        """Checkpoint a running sandbox's memory and processes and stop it: 409 when paused."""
        sbx = self.get(team_id, sandbox_id)
        if not await self._pause(sbx):
            raise errors.Conflict(f"sandbox {sandbox_id!r} is already paused")

    async def _pause(self, sbx: LiveSandbox) -> bool:
        """Pause a running sandbox; False when it was paused already."""
        if sbx.state != "running":  # paused, or gone: `_checkpoint` says which
            return await self._checkpoint(sbx)
        rss = await self._memory_in_use(sbx)
        ask = admission.Ask("pausing it", disk=rss, path=self.snapshots.root, stored=rss)
        with self.admission.admit(ask, await self._usage(sbx.team_id)):
            return await self._checkpoint(sbx)

    async def _checkpoint(self, sbx: LiveSandbox) -> bool:
        """`_pause` once admitted."""
        async with self._lock(sbx.id):
            if sbx.id not in self._live or sbx.id in self._ending:
                raise errors.SandboxNotFound(sbx.id)
            if sbx.state == "paused":
                return False
            checkpointing = self._checkpointing
            if checkpointing is None:
                raise errors.NotSupported("this runtime cannot checkpoint sandboxes")
            started = time.monotonic()
            image = await asyncio.to_thread(self.snapshots.new_checkpoint_dir, sbx.id, "pause")
            try:
                await checkpointing.checkpoint(sandbox_id=sbx.id, image_dir=image)
            except runtime_errors.RuntimeDriverError as exc:
                await asyncio.to_thread(shutil.rmtree, image, True)
                logger.exception("lifecycle.pause.failed %s", sbx.id)
                raise errors.RuntimeFailure(
                    f"pausing the sandbox failed (it goes on running): {exc}"
                ) from exc
            faults.crash_point("pause.stopped")
            self._targets.pop(sbx.id, None)
            self._cpu_samples.pop(sbx.id, None)
            sbx.state, sbx.paused_at = "paused", _now()
            await asyncio.to_thread(self._save_state, sbx)
            # Earlier checkpoints (none are expected) are of no use any more.
            await asyncio.to_thread(self.snapshots.remove_checkpoints, sbx.id, image)
        self.changed.set()
        logger.info(
            "lifecycle.pause.complete %s in %.0f ms",
            sbx.id,
            (time.monotonic() - started) * 1000,
        )
        return True

    async def fork(
        self, team_id: str, sandbox_id: str, count: int = 1, timeout: int | None = None
    ) -> list[LiveSandbox]:
        """``count`` new running sandboxes, each a copy of this one's memory, processes and
        files as they are now; the original is frozen for a moment and goes on.

        Each child is a full sandbox of the same team: its own id and access token, the
        original's template, limits, network policy and environment, the original's metadata
        plus ``forkedFrom``, and an end time ``timeout`` (the server's default when absent)
        from now. All are made or none (the driver undoes every child when one fails).
        """
        parent = self.get(team_id, sandbox_id)
        if not 1 <= count <= 20:
            raise errors.InvalidRequest(f"count must be between 1 and 20, got {count}")
        seconds = self._clamp_timeout(timeout)
        forking = self._forking
        if forking is None:
            raise errors.NotSupported("this runtime cannot fork sandboxes")
        children = [
            dataclasses.replace(
                parent,
                id=new_sandbox_id(),
                metadata={**parent.metadata, "forkedFrom": parent.id},
                access_token=secrets.token_hex(24) if parent.secure else None,
                state="running",
                network=dict(parent.network),
                env_vars=dict(parent.env_vars),
                boot="fork",
                timeout=seconds,
                busy=False,
            )
            for _ in range(count)
        ]
        specs = [
            models.SandboxSpec(
                sandbox_id=c.id,
                template=c.template,
                limits=models.Limits(
                    memory_mb=c.memory_mb,
                    cpu_cores=c.cpu_count,
                    pids=c.pids,
                    disk_mb=c.disk_mb,
                ),
                network=models.NetworkPolicy(
                    internet=c.allow_internet,
                    allow=tuple(c.network.get("allowOut", ())),
                    deny=tuple(c.network.get("denyOut", ())),
                ),
                env=c.env_vars,
                metadata=c.metadata,
            )
            for c in children
        ]
        if parent.state != "running":  # paused, or gone: `_fork` says which
            return await self._fork(parent, children, specs, seconds)
        images = await self._memory_in_use(parent)
        ask = admission.Ask(
            f"forking it {count} times", disk=count * parent.disk_mb * MiB + images,
            path=self.settings.runtime.data_dir, memory_mb=count * parent.memory_mb,
        )  # fmt: skip
        with self.admission.admit(ask, await self._usage()):
            return await self._fork(parent, children, specs, seconds)

    async def _fork(
        self, parent: LiveSandbox, children: list[LiveSandbox], specs: list[models.SandboxSpec], seconds: int
    ) -> list[LiveSandbox]:
        """`fork` once admitted: ``children`` made as ``specs`` say, in the runtime, the store
        and memory, or none of them."""
        forking = self._forking
        assert forking is not None  # `fork` checked
        started = time.monotonic()
        async with self._lock(parent.id):
            if parent.id not in self._live or parent.id in self._ending:
                raise errors.SandboxNotFound(parent.id)
            if parent.state != "running":
                raise errors.Conflict(
                    f"sandbox {parent.id!r} is paused: resume it before forking it"
                )
            image = await asyncio.to_thread(self.snapshots.new_checkpoint_dir, parent.id, "fork")
            try:
                await forking.fork(sandbox_id=parent.id, children=specs, image_dir=image)
                faults.crash_point("fork.copied")
            except runtime_errors.RuntimeDriverError as exc:
                logger.exception("lifecycle.fork.failed %s", parent.id)
                raise errors.RuntimeFailure(
                    f"forking the sandbox failed: {exc}"
                ) from exc
            finally:
                # The children hold their own copy of the memory: the images are spent.
                await asyncio.to_thread(shutil.rmtree, image, True)
        now = _now()
        for child in children:
            child.started_at = now
            child.end_at = now + timedelta(seconds=seconds)
            child.touch()
        try:
            await asyncio.to_thread(self._insert_all, children)
        except BaseException:
            for child in children:
                await asyncio.shield(self._destroy(child.id))
            raise
        for child in children:
            self._live[child.id] = child
        self.changed.set()
        logger.info(
            "lifecycle.fork.complete %s -> %s in %.0f ms",
            parent.id,
            ",".join(c.id for c in children),
            (time.monotonic() - started) * 1000,
        )
        return children

    def _insert_all(self, sandboxes: Iterable[LiveSandbox]) -> None:
        with self.database.session() as session:
            session.add_all([s.to_record(self.vault) for s in sandboxes])

    # -- snapshots -------------------------------------------------------------------------

    async def snapshot(
        self, team_id: str, sandbox_id: str, *, name: str | None = None, memory: bool = True
    ) -> store.SnapshotRecord:
        """A named snapshot of a running sandbox (its files, and its memory unless
        ``memory`` is false) that `create` can start from; the sandbox is frozen for a moment
        and goes on. Each snapshot of a name is its next version (``v1``, ``v2``...); without
        a name it gets a new one, ``snap-<random>``."""
        sbx = self.get(team_id, sandbox_id)
        if name is not None:
            if not snapshots.NAME.match(name):
                raise errors.InvalidRequest(
                    f"name {name!r}: use 1-63 of a-z, 0-9, '.', '_' and '-', starting with a "
                    "letter or digit"
                )
            if self._is_template(name):
                raise errors.Conflict(f"name {name!r} is a template's: choose another")
        snapshotting = self._snapshotting
        if snapshotting is None:
            raise errors.NotSupported("this runtime cannot snapshot sandboxes")
        if sbx.state != "running":  # paused, or gone: `_snapshot` says which
            return await self._snapshot(sbx, name, memory)
        stats = await self._stats(sbx)
        size = stats.disk_bytes if stats else sbx.disk_mb * MiB
        if memory:
            size += stats.memory_bytes if stats else sbx.memory_mb * MiB
        ask = admission.Ask("this snapshot", disk=size, path=self.snapshots.root, stored=size)
        with self.admission.admit(ask, await self._usage(team_id)):
            return await self._snapshot(sbx, name, memory)

    async def _snapshot(self, sbx: LiveSandbox, name: str | None, memory: bool) -> store.SnapshotRecord:
        """`snapshot` once admitted."""
        snapshotting = self._snapshotting
        assert snapshotting is not None  # `snapshot` checked
        started = time.monotonic()
        async with self._lock(sbx.id):
            if sbx.id not in self._live or sbx.id in self._ending:
                raise errors.SandboxNotFound(sbx.id)
            if sbx.state != "running":
                raise errors.Conflict(
                    f"sandbox {sbx.id!r} is paused: resume it before snapshotting it"
                )
            snapshot_id, partial = await asyncio.to_thread(self.snapshots.new_snapshot_dir)
            try:
                await snapshotting.snapshot(sandbox_id=sbx.id, dest=partial, memory=memory)
                faults.crash_point("snapshot.taken")
            except runtime_errors.RuntimeDriverError as exc:
                logger.exception("lifecycle.snapshot.failed %s", sbx.id)
                raise errors.RuntimeFailure(
                    f"snapshotting the sandbox failed (it goes on running): {exc}"
                ) from exc
        row = await self.snapshots.commit(
            snapshot_id,
            partial,
            name=name,
            fields={
                "team_id": sbx.team_id, "sandbox_id": sbx.id, "template": sbx.template,
                "memory": memory, "cpu_count": sbx.cpu_count, "memory_mb": sbx.memory_mb,
                "disk_mb": sbx.disk_mb, "pids": sbx.pids,
                "env_vars_sealed": self.vault.seal(sbx.env_vars, row=f"snapshots/{snapshot_id}/env_vars"),
            },
        )  # fmt: skip
        logger.info(
            "lifecycle.snapshot.complete %s -> %s in %.0f ms",
            sbx.id,
            snapshots.tag_of(row),
            (time.monotonic() - started) * 1000,
        )
        return row

    def _is_template(self, name: str) -> bool:
        """Whether a template of this name is built (a snapshot must not hide it)."""
        return (self.settings.runtime.templates_dir / name / "current").exists()

    async def restart(
        self, team_id: str, sandbox_id: str, timeout: int | None = None
    ) -> LiveSandbox:
        """End every process of a running or paused sandbox and boot it clean on its own
        files, with its template's current build; it ends ``timeout`` (the server's default)
        from now. When the boot fails the sandbox is ended: nothing is left half-running."""
        sbx = self.get(team_id, sandbox_id)
        seconds = self._clamp_timeout(timeout)
        if sbx.state != "paused":
            await self._restart(sbx, seconds)
            return sbx
        with self.admission.admit(self._waking(sbx, "restarting it"), await self._usage()):
            await self._restart(sbx, seconds)
        return sbx

    async def _restart(self, sbx: LiveSandbox, seconds: int, *, if_paused: bool = False) -> bool:
        """Boot a sandbox clean on its files (see `restart`); with ``if_paused``, only if it
        is paused when its turn comes (False: it was running, and is left alone)."""
        restarting = self._restarting
        if restarting is None:
            raise errors.NotSupported("this runtime cannot restart sandboxes")
        failure: runtime_errors.RuntimeDriverError | None = None
        async with self._lock(sbx.id):
            if sbx.id not in self._live or sbx.id in self._ending:
                raise errors.SandboxNotFound(sbx.id)
            if if_paused and sbx.state != "paused":
                return False
            try:
                await restarting.restart(sandbox_id=sbx.id)
            except runtime_errors.TemplateNotFound as exc:
                raise errors.TemplateNotFound(
                    f"{exc}: the sandbox is left as it was"
                ) from exc
            except runtime_errors.RuntimeDriverError as exc:
                failure = exc
            else:
                self._targets.pop(sbx.id, None)
                self._cpu_samples.pop(sbx.id, None)
                self._running_again(sbx, "clean", seconds)
                await asyncio.to_thread(self._save_state, sbx)
                await asyncio.to_thread(self.snapshots.remove_checkpoints, sbx.id)
        if failure is not None:
            logger.error("lifecycle.restart.failed %s: %s", sbx.id, failure)
            await self._end(sbx.id)
            raise errors.RuntimeFailure(
                f"restarting the sandbox failed, and it was ended: {failure}"
            ) from failure
        self.changed.set()
        logger.info("lifecycle.restart.complete %s", sbx.id)
        return True

    async def metrics(self, team_id: str, sandbox_id: str) -> list[Metric]:
        """One point, now: CPU use since the previous call (or since the start), memory, disk."""
        sbx = self.get(team_id, sandbox_id)
        if sbx.state != "running":
            return []  # a paused sandbox uses no CPU or memory, and is not woken to say so
        try:
            stats = await self.driver.stats(sandbox_id=sandbox_id)
        except runtime_errors.SandboxNotFound:
            raise errors.SandboxNotFound(sandbox_id) from None
        except runtime_errors.RuntimeDriverError as exc:
            lock = self._locks.get(sandbox_id)
            if sbx.state != "running" or (lock is not None and lock.locked()):
                return []  # it is being paused, resumed, forked or killed right now
            raise errors.RuntimeFailure(
                f"reading the sandbox's figures failed: {exc}"
            ) from exc
        now_mono = time.monotonic()
        then, cpu_before = self._cpu_samples.get(
            sandbox_id,
            (now_mono - max((_now() - sbx.started_at).total_seconds(), 1e-3), 0),
        )
        self._cpu_samples[sandbox_id] = (now_mono, stats.cpu_usage_ns)
        elapsed = max(now_mono - then, 1e-3)
        pct = (
            100.0
            * (stats.cpu_usage_ns - cpu_before)
            / 1e9
            / elapsed
            / max(stats.cpu_cores, 0.01)
        )
        return [
            Metric(
                timestamp=_now(),
                cpu_count=max(1, math.ceil(stats.cpu_cores)),
                cpu_used_pct=round(min(max(pct, 0.0), 100.0), 2),
                mem_used=stats.memory_bytes,
                mem_total=stats.memory_limit_bytes,
                mem_cache=0,
                disk_used=stats.disk_bytes,
                disk_total=stats.disk_limit_bytes,
            )
        ]

    # -- admission -------------------------------------------------------------------------

    async def _usage(self, team_id: str | None = None) -> admission.Usage:
        """What running sandboxes hold now, and with ``team_id`` what that team's checkpoints
        and snapshots take, for `admission.Admission.admit`."""
        running = [s for s in self._live.values() if s.state == "running" and s.id not in self._ending]
        written = await asyncio.gather(*(self._disk_written(s) for s in running))
        stored = 0
        if team_id is not None:
            paused = [s.id for s in self._live.values() if s.team_id == team_id and s.state == "paused"]
            stored = await asyncio.to_thread(self.snapshots.team_bytes, team_id, paused)
        now = _now()
        return admission.Usage(
            reserved=sum(max(0, s.disk_mb * MiB - w) for s, w in zip(running, written, strict=True)),
            memory_mb=sum(s.memory_mb for s in running),
            retry_after=min(((s.end_at - now).total_seconds() for s in running), default=60),
            team_stored=stored,
        )

    async def _stats(self, sbx: LiveSandbox) -> models.Stats | None:
        """The sandbox's figures now; None when the runtime cannot say (it is being paused)."""
        try:
            return await self.driver.stats(sandbox_id=sbx.id)
        except runtime_errors.RuntimeDriverError:
            return None

    async def _disk_written(self, sbx: LiveSandbox) -> int:
        """Bytes of its disk the sandbox has written (0 when unknown: all of it counts as
        reserved), read at most once a second: a burst of creates would otherwise read the
        figures of every running sandbox for each (~0.2 ms a sandbox)."""
        seen = self._written.get(sbx.id)
        if seen is None or time.monotonic() - seen[0] > _WRITTEN_TTL:
            stats = await self._stats(sbx)
            seen = self._written[sbx.id] = (time.monotonic(), stats.disk_bytes if stats else 0)
        return seen[1]

    async def _memory_in_use(self, sbx: LiveSandbox) -> int:
        """Bytes of memory the sandbox uses (its limit when unknown): about what a checkpoint
        of it takes on disk."""
        stats = await self._stats(sbx)
        return stats.memory_bytes if stats else sbx.memory_mb * MiB

    # -- timers ----------------------------------------------------------------------------

    async def end_due(self) -> float | None:
        """Give every running sandbox past its end time, or idle for its idle timeout, its
        on-timeout action (kill, or pause when created to), and end what is past its retention
        (`expire`); seconds until the next such moment, if any. Paused sandboxes have no
        timer but the retention."""
        now = _now()
        running = [
            s for s in self._live.values() if s.state == "running" and s.id not in self._ending
        ]
        due = [s for s in running if s.end_at <= now]
        quiet = [
            s
            for s in running
            if s.idle_timeout
            and s.end_at > now
            and (s.busy or time.monotonic() - s.last_active >= s.idle_timeout)
        ]
        busy = await asyncio.gather(*(self._busy(s) for s in quiet))
        idle = [
            s
            for s, running_now in zip(quiet, busy, strict=True)
            if not running_now
            and s.state == "running"  # not paused or ended while we asked
            and s.id not in self._ending
            and time.monotonic() - s.last_active >= s.idle_timeout  # type: ignore[operator]
        ]
        for s in idle:
            logger.info("lifecycle.idle %s: nothing for %d s", s.id, s.idle_timeout)
        if due or idle:
            await asyncio.gather(*(self._time_out(s) for s in (*due, *idle)))
        waits = await self.expire()
        waits += [
            (s.end_at - _now()).total_seconds()
            for s in self._live.values()
            if s.state == "running" and s.id not in self._ending
        ]
        mono = time.monotonic()
        waits += [
            _BUSY_POLL if s.busy else s.last_active + s.idle_timeout - mono
            for s in self._live.values()
            if s.state == "running" and s.id not in self._ending and s.idle_timeout
        ]
        return max(min(waits), 0.0) if waits else None

    async def expire(self) -> list[float]:
        """End paused sandboxes whose checkpoint, and delete snapshots that, are older than the
        retention; seconds until the next of them is due."""
        retention = timedelta(days=self.settings.admission.retention_days)
        now = _now()
        paused = [
            s for s in self._live.values()
            if s.state == "paused" and s.paused_at is not None and s.id not in self._ending
        ]  # fmt: skip
        old = [s for s in paused if s.paused_at + retention <= now]  # type: ignore[operator]
        for s in old:
            logger.info("lifecycle.retention %s: paused since %s, ending it", s.id, s.paused_at)
        await asyncio.gather(*(self._end(s.id) for s in old))
        oldest = await self.snapshots.expire(now - retention)
        ended = {s.id for s in old}
        waits = [(s.paused_at + retention - now).total_seconds() for s in paused if s.id not in ended]  # type: ignore[operator]
        if oldest is not None:
            waits.append((oldest + retention - now).total_seconds())
        return waits

    async def _busy(self, sbx: LiveSandbox) -> bool:
        """Whether a command started through the API runs in the sandbox (then it is active
        now); a sandbox that cannot say, or is being paused or forked, counts as busy."""
        lock = self._locks.get(sbx.id)
        try:
            if lock is not None and lock.locked():
                running = True
            else:
                found = await asyncio.wait_for(self.driver.processes(sandbox_id=sbx.id), 5)
                running = bool(found)
        except (runtime_errors.RuntimeDriverError, TimeoutError):
            running = True
        sbx.busy = running
        if running:
            sbx.touch()
        return running

    async def _time_out(self, sbx: LiveSandbox) -> None:
        if sbx.auto_pause:
            try:
                await self._pause(sbx)
                return
            except errors.SandboxNotFound:
                return
            except errors.LifecycleError:
                # A sandbox that cannot be paused is not left running past its time.
                logger.exception("lifecycle.autopause.failed %s: killing it", sbx.id)
        await self._end(sbx.id)

    async def end_all(self) -> None:
        await asyncio.gather(*(self._end(sid) for sid in list(self._live)))

    # -- the sandbox plane ------------------------------------------------------------------

    def access_token(self, sandbox_id: str) -> str | None:
        """The access token of a sandbox the sandbox plane can reach (None when it was created
        without one): a running one, or a paused one that resumes on a request."""
        return self._reachable(sandbox_id).access_token

    def _reachable(self, sandbox_id: str) -> LiveSandbox:
        sbx = self._live.get(sandbox_id)
        if (
            sbx is None
            or sandbox_id in self._ending
            or not (sbx.state == "running" or sbx.auto_resume)
        ):
            raise target.SandboxGone(sandbox_id)
        return sbx

    async def resolve(
        self, sandbox_id: str, access_token: str | None
    ) -> target.SandboxTarget:
        """The sandbox a sandbox-plane request names (`sandlot.runtime.target.Resolver`),
        resumed first when it is paused and was created with auto-resume."""
        sbx = self._reachable(sandbox_id)
        if sbx.secure and (
            access_token is None
            or sbx.access_token is None
            or not hmac.compare_digest(access_token.encode(), sbx.access_token.encode())
        ):
            raise target.TokenRejected(sandbox_id)
        if sbx.state == "paused":
            try:
                await self._resume(sbx, sbx.timeout)
            except errors.LifecycleError:
                logger.exception("lifecycle.autoresume.failed %s", sandbox_id)
                raise target.SandboxGone(sandbox_id) from None
        found = self._targets.get(sandbox_id)
        if found is None:
            try:
                info = await self.driver.info(sandbox_id=sandbox_id)
                filesystem = await self.driver.filesystem(sandbox_id=sandbox_id)
            except runtime_errors.RuntimeDriverError:
                raise target.SandboxGone(sandbox_id) from None
            found = target.SandboxTarget(
                sandbox_id=sandbox_id,
                driver=self.driver,
                address=info.address,
                filesystem=filesystem,
                env=sbx.env_vars,
                touch=sbx.touch,
            )
            self._targets[sandbox_id] = found
        return found
