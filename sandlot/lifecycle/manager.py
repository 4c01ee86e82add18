"""The sandbox state machine on top of a runtime driver and the store.

Its parts live beside it: what is held of each sandbox and its rows (`records`), the checks
and defaults of a request (`requests`), admission control (`admission`), figures (`metrics`),
the end and idle timers (`timers`), the sandbox plane's resolver (`resolver`), pause
checkpoints and snapshots (`snapshots`), warm pools (`pools`), what a start adopts
(`reconcile`). This module holds the moves from one state to another, and the order of each
move's steps. It is longer than the ~600 lines a module aims for because it holds nine moves
(create, kill, timeout, connect, resume, pause, fork, snapshot, restart), each an admission, a
lock, a driver call with its crash points and a store write in one fixed order: split, one
move's order would be read across files.

A server restart keeps sandboxes running: `start` adopts what the runtime still holds, marks
the rest killed and makes the store say what the runtime holds (`reconcile.adopt`), and the
timers end whatever passed its end time while the server was down.

Pause keeps memory: the driver checkpoints the sandbox's processes (CRIU) into the snapshot
store, and the sandbox holds no memory and no CPU until it is resumed. A paused sandbox has no
timer but the retention: it is kept until it is resumed or killed. Its end time stays what it
was at pause (info and list show it, and never move it); a resume gives it a new one. Killing a
sandbox removes its checkpoints; a resume removes the one it restored from. A paused sandbox
stays paused over a server restart (the store says ``paused``, the driver's state.json names
the checkpoint) and can be resumed after.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import secrets
import shutil
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime, timedelta

from sandlot.config import Settings
from sandlot.lifecycle import (
    admission,
    errors,
    metrics,
    pools,
    reconcile,
    records,
    requests,
    resolver,
    snapshots,
    table,
    timers,
)
from sandlot.runtime import base, faults, models, target
from sandlot.runtime import errors as runtime_errors
from sandlot.store import db
from sandlot.store import models as store
from sandlot.store.vault import Vault

__all__ = ["SandboxManager"]

logger = logging.getLogger("sandlot.lifecycle")

MiB = admission.MiB
RUNNING, PAUSED = models.SandboxState.RUNNING, models.SandboxState.PAUSED


@contextlib.contextmanager
def _driver_step(what: str, sandbox_id: str, failure: str) -> Iterator[None]:
    """A driver's part of a change: its failure logged (``lifecycle.<what>.failed``) and
    raised as `errors.RuntimeFailure`, ``failure`` and then the driver's reason."""
    try:
        yield
    except runtime_errors.RuntimeDriverError as exc:
        logger.exception("lifecycle.%s.failed %s", what, sandbox_id)
        raise errors.RuntimeFailure(f"{failure}: {exc}") from exc


def _log_done(what: str, sandbox: str, started: float) -> None:
    """``lifecycle.<what>.complete``, and how long since ``started`` (`time.monotonic`)."""
    logger.info("lifecycle.%s.complete %s in %.0f ms", what, sandbox, (time.monotonic() - started) * 1000)


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
        self._table = table.SandboxTable()
        self._live = self._table.sandboxes
        """The table's sandboxes by id."""
        rt = settings.runtime
        self.snapshots = snapshots.SnapshotStore(
            settings.state_dir / "snapshots", database, group=rt.userns_base if rt.userns else 0
        )
        """Pause checkpoints and named snapshots."""
        self.vault = Vault.open(settings.state_dir)
        """Seals the sandboxes' access tokens and environments in the store."""
        self._records = records.Records(database, self.vault)
        self._meter = metrics.Meter(driver)
        self._resolver = resolver.Resolver(driver, self._table.reachable, lambda s: self._resume(s, s.timeout))
        self._deadlines = timers.Deadlines(
            self._table, driver, self.snapshots, settings.admission, time_out=self._time_out, end=self._end
        )
        self.admission = admission.Admission(settings.admission, data_dir=rt.data_dir)
        """Refuses what the host cannot take (`sandlot.lifecycle.admission`)."""
        self.changed = asyncio.Event()
        """Set whenever an end time may have moved earlier or a sandbox appeared (timers wake)."""

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> models.ReconcileReport:
        """Load live sandboxes from the store, reconcile the runtime with them, mark the ones
        the runtime lost as killed, and make the store say what the runtime holds
        (`reconcile.adopt`)."""
        report = await reconcile.adopt(self.driver, self._records, self.snapshots, self._table)
        self.changed.set()
        return report

    def _forget(self, sandbox_id: str) -> None:
        """Drop what was known of a sandbox's processes: they stopped (pause, restart, end)."""
        self._resolver.forget(sandbox_id)
        self._meter.forget(sandbox_id)

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
    ) -> records.LiveSandbox:
        """Make a sandbox; on any failure nothing of it is left in the runtime or the store.

        ``template`` names a template, or a snapshot of the team (``name`` for its newest
        version, ``name:vN``): a memory snapshot's sandbox goes on from the snapshot's
        processes (boot ``fork``), a filesystem snapshot's boots clean on a copy of its files.
        Either gets the snapshot's limits and environment (``env_vars`` added on top).
        """
        source = await self._snapshot_named(team_id, template)
        env = requests.environment(env_vars, metadata)
        requests.check_idle_timeout(idle_timeout)
        rt = self.settings.runtime
        limits = requests.limits(rt, source, cpu_count=cpu_count, memory_mb=memory_mb, disk_mb=disk_mb)
        policy = requests.network(rt, internet=allow_internet, allow_out=allow_out, deny_out=deny_out)
        if source is not None:
            env = {**self.vault.unseal(source.env_vars_sealed, row=f"snapshots/{source.id}/env_vars"), **env}
        admission.check_limits(limits, rt.max_limits, source=f"snapshot {template!r}: " if source else "")
        seconds = requests.timeout(self.settings.server, timeout)
        now = records.now()
        sbx = records.LiveSandbox(
            id=records.new_sandbox_id(), team_id=team_id, template=source.template if source else template,
            alias=alias, metadata=dict(metadata or {}), env_vars=env, started_at=now,
            end_at=now + timedelta(seconds=seconds), state=RUNNING,
            access_token=secrets.token_hex(24) if secure else None, secure=secure,
            auto_pause=auto_pause, cpu_count=limits.cpu_cores, memory_mb=limits.memory_mb,
            disk_mb=limits.disk_mb, pids=limits.pids, allow_internet=policy.internet,
            network={"allowOut": list(policy.allow), "denyOut": list(policy.deny)},
            auto_resume=auto_resume, timeout=seconds, idle_timeout=idle_timeout or None,
            boot=models.Boot.FORK if source is not None and source.memory else models.Boot.CLEAN,
        )
        ask = admission.Ask(
            "this create", disk=limits.disk_mb * MiB, path=rt.data_dir, memory_mb=limits.memory_mb
        )
        with self.admission.admit(ask, await self._usage()):
            return await self._make(sbx, sbx.spec(), source, now)

    async def _make(
        self, sbx: records.LiveSandbox, spec: models.SandboxSpec, source: store.SnapshotRecord | None, now: datetime
    ) -> records.LiveSandbox:
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
        sbx.end_at = records.now() + (sbx.end_at - now)
        sbx.touch()
        await self._add([sbx])
        logger.info("lifecycle.create.complete %s team=%s", sbx.id, sbx.team_id)
        return sbx

    async def _add(self, made: list[records.LiveSandbox]) -> None:
        """Sandboxes the runtime has made, into the store and memory; out of the runtime again
        when the store refuses them."""
        try:
            await asyncio.to_thread(self._records.insert, made)
        except BaseException:
            for sbx in made:
                await asyncio.shield(self._destroy(sbx.id))
            raise
        self._table.add(made)
        self.changed.set()

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
        requests.check_template_name(template)
        return await self.snapshots.find(team_id, template)

    def _clamp_timeout(self, timeout: int | None) -> int:
        return requests.timeout(self.settings.server, timeout)

    # -- read ------------------------------------------------------------------------------

    def get(self, team_id: str, sandbox_id: str) -> records.LiveSandbox:
        """The team's live sandbox; a request naming it, so activity (see `timers`)."""
        return self._table.get(team_id, sandbox_id)

    def live(self) -> list[records.LiveSandbox]:
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
    ) -> tuple[list[records.LiveSandbox], str | None]:
        """One page of the team's live sandboxes by start time, and the token of the next page.

        The token is the position (start time and id) of the last item returned, so that a
        sandbox created or killed between two pages neither repeats nor hides another.
        """
        return self._table.list(
            team_id, metadata=metadata, states=states, order=order, started_after=started_after,
            template=template, limit=limit, next_token=next_token,
        )

    # -- change ----------------------------------------------------------------------------

    async def kill(self, team_id: str, sandbox_id: str) -> None:
        self.get(team_id, sandbox_id)
        await self._end(sandbox_id)

    async def _end(self, sandbox_id: str) -> None:
        """End a sandbox: gone from every read at once, then from the runtime and the store."""
        if not self._table.start_ending(sandbox_id):
            return
        try:
            async with self._table.lock(sandbox_id):
                await self._destroy(sandbox_id)
                await asyncio.to_thread(self.snapshots.remove_checkpoints, sandbox_id)
                await asyncio.to_thread(self._records.mark_killed, [sandbox_id])
        finally:
            self._table.remove(sandbox_id)
            self._forget(sandbox_id)
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
    ) -> records.LiveSandbox:
        """The sandbox now ends ``timeout`` seconds from now (earlier or later than before)."""
        sbx = self.get(team_id, sandbox_id)
        sbx.end_at = records.now() + timedelta(seconds=self._clamp_timeout(timeout))
        await asyncio.to_thread(self._records.save_end, sbx)
        self.changed.set()
        return sbx

    async def connect(
        self, team_id: str, sandbox_id: str, timeout: int | None = None, *, memory: bool = True
    ) -> tuple[records.LiveSandbox, bool]:
        """The sandbox, running, and whether it was resumed for this.

        A running sandbox's end time moves to ``timeout`` from now if that is later (a
        connect never shortens a sandbox's life); a paused one is resumed and ends
        ``timeout`` (the server's default when absent) from now. Without ``memory`` (the
        e2b SDK's ``on_resume="reboot"``) a paused one is not restored but restarted: it
        boots clean on its files, its checkpoint unused; a running one is left as it is.
        """
        sbx = self.get(team_id, sandbox_id)
        if sbx.state == PAUSED:
            resumed = await self._resume(sbx, timeout, memory=memory)
            if resumed:
                return sbx, True
        end = records.now() + timedelta(seconds=self._clamp_timeout(timeout))
        if end > sbx.end_at:
            sbx.end_at = end
            await asyncio.to_thread(self._records.save_end, sbx)
        return sbx, False

    async def resume(
        self, team_id: str, sandbox_id: str, timeout: int | None = None, *, memory: bool = True
    ) -> records.LiveSandbox:
        """Resume a paused sandbox (E2B's older ``POST /sandboxes/{id}/resume``), or without
        ``memory`` restart it clean on its files (as `connect`): 409 when it is running."""
        sbx = self.get(team_id, sandbox_id)
        if not await self._resume(sbx, timeout, memory=memory):
            raise errors.Conflict(f"sandbox {sandbox_id!r} is already running")
        return sbx

    async def _resume(self, sbx: records.LiveSandbox, timeout: int | None, *, memory: bool = True) -> bool:
        """Restore a paused sandbox (restart it, without ``memory``); False when it was
        running already."""
        timeout = self._clamp_timeout(timeout)
        if sbx.state != PAUSED:  # running, or gone: `_restore` says which
            return await self._restore(sbx, timeout, memory=memory)
        with self.admission.admit(self._waking(sbx, "resuming it"), await self._usage()):
            return await self._restore(sbx, timeout, memory=memory)

    def _waking(self, sbx: records.LiveSandbox, what: str) -> admission.Ask:
        """What a paused sandbox asks to run again: its memory, and room for its disk to grow."""
        return admission.Ask(what, disk=sbx.disk_mb * MiB, path=self.settings.runtime.data_dir, memory_mb=sbx.memory_mb)

    async def _restore(self, sbx: records.LiveSandbox, timeout: int, *, memory: bool) -> bool:
        """`_resume` once admitted."""
        if not memory:
            return await self._restart(sbx, timeout, if_paused=True)
        async with self._table.turn(sbx):
            if sbx.state != PAUSED:
                return False
            checkpointing = self._checkpointing
            if checkpointing is None:
                raise errors.NotSupported("this runtime cannot restore checkpoints")
            started = time.monotonic()
            with _driver_step("resume", sbx.id, "resuming the sandbox failed (it stays paused)"):
                await checkpointing.restore(sandbox_id=sbx.id)
            faults.crash_point("resume.committed")
            sbx.running_again(models.Boot.RESUME, timeout)
            await asyncio.to_thread(self._records.save_state, sbx)
            faults.crash_point("resume.recorded")
            # The checkpoint is spent: the processes run on from it.
            await asyncio.to_thread(self.snapshots.remove_checkpoints, sbx.id)
        self.changed.set()
        _log_done("resume", sbx.id, started)
        return True

    async def pause(self, team_id: str, sandbox_id: str) -> None:
        """Checkpoint a running sandbox's memory and processes and stop it: 409 when paused."""
        sbx = self.get(team_id, sandbox_id)
        if not await self._pause(sbx):
            raise errors.Conflict(f"sandbox {sandbox_id!r} is already paused")

    async def _pause(self, sbx: records.LiveSandbox) -> bool:
        """Pause a running sandbox; False when it was paused already."""
        if sbx.state != RUNNING:  # paused, or gone: `_checkpoint` says which
            return await self._checkpoint(sbx)
        rss = await self._meter.memory_in_use(sbx)
        ask = admission.Ask("pausing it", disk=rss, path=self.snapshots.root, stored=rss)
        with self.admission.admit(ask, await self._usage(sbx.team_id)):
            return await self._checkpoint(sbx)

    async def _checkpoint(self, sbx: records.LiveSandbox) -> bool:
        """`_pause` once admitted."""
        async with self._table.turn(sbx):
            if sbx.state == PAUSED:
                return False
            checkpointing = self._checkpointing
            if checkpointing is None:
                raise errors.NotSupported("this runtime cannot checkpoint sandboxes")
            started = time.monotonic()
            image = await asyncio.to_thread(self.snapshots.new_checkpoint_dir, sbx.id, "pause")
            with _driver_step("pause", sbx.id, "pausing the sandbox failed (it goes on running)"):
                try:
                    await checkpointing.checkpoint(sandbox_id=sbx.id, image_dir=image)
                except runtime_errors.RuntimeDriverError:
                    await asyncio.to_thread(shutil.rmtree, image, True)
                    raise
            faults.crash_point("pause.stopped")
            self._forget(sbx.id)
            sbx.state, sbx.paused_at = PAUSED, records.now()
            await asyncio.to_thread(self._records.save_state, sbx)
            # Earlier checkpoints (none are expected) are of no use any more.
            await asyncio.to_thread(self.snapshots.remove_checkpoints, sbx.id, image)
        self.changed.set()
        _log_done("pause", sbx.id, started)
        return True

    async def fork(
        self, team_id: str, sandbox_id: str, count: int = 1, timeout: int | None = None
    ) -> builtins.list[records.LiveSandbox]:
        """``count`` new running sandboxes, each a copy of this one's memory, processes and
        files as they are now; the original is frozen for a moment and goes on.

        Each child is a full sandbox of the same team: its own id and access token, the
        original's template, limits, network policy and environment, the original's metadata
        plus ``forkedFrom``, and an end time ``timeout`` (the server's default when absent)
        from now. All are made or none (the driver undoes every child when one fails).
        """
        parent = self.get(team_id, sandbox_id)
        requests.check_fork_count(count)
        seconds = self._clamp_timeout(timeout)
        if self._forking is None:
            raise errors.NotSupported("this runtime cannot fork sandboxes")
        children = [
            dataclasses.replace(
                parent,
                id=records.new_sandbox_id(),
                metadata={**parent.metadata, "forkedFrom": parent.id},
                access_token=secrets.token_hex(24) if parent.secure else None,
                state=RUNNING,
                boot=models.Boot.FORK,
                timeout=seconds,
                busy=False,
            )
            for _ in range(count)
        ]
        if parent.state != RUNNING:  # paused, or gone: `_fork` says which
            return await self._fork(parent, children, seconds)
        images = await self._meter.memory_in_use(parent)
        ask = admission.Ask(
            f"forking it {count} times", disk=count * parent.disk_mb * MiB + images,
            path=self.settings.runtime.data_dir, memory_mb=count * parent.memory_mb,
        )
        with self.admission.admit(ask, await self._usage()):
            return await self._fork(parent, children, seconds)

    async def _fork(
        self, parent: records.LiveSandbox, children: builtins.list[records.LiveSandbox], seconds: int
    ) -> builtins.list[records.LiveSandbox]:
        """`fork` once admitted: ``children`` made in the runtime, the store and memory, or
        none of them."""
        forking = self._forking
        assert forking is not None  # `fork` checked
        started = time.monotonic()
        async with self._table.turn(parent, running_for="forking"):
            image = await asyncio.to_thread(self.snapshots.new_checkpoint_dir, parent.id, "fork")
            try:
                with _driver_step("fork", parent.id, "forking the sandbox failed"):
                    await forking.fork(sandbox_id=parent.id, children=[c.spec() for c in children], image_dir=image)
                    faults.crash_point("fork.copied")
            finally:
                # The children hold their own copy of the memory: the images are spent.
                await asyncio.to_thread(shutil.rmtree, image, True)
        now = records.now()
        for child in children:
            child.started_at = now
            child.end_at = now + timedelta(seconds=seconds)
            child.touch()
        await self._add(children)
        _log_done("fork", f"{parent.id} -> {','.join(c.id for c in children)}", started)
        return children

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
            requests.check_snapshot_name(name)
            if self._is_template(name):
                raise errors.Conflict(f"name {name!r} is a template's: choose another")
        if self._snapshotting is None:
            raise errors.NotSupported("this runtime cannot snapshot sandboxes")
        if sbx.state != RUNNING:  # paused, or gone: `_snapshot` says which
            return await self._snapshot(sbx, name, memory)
        stats = await self._meter.stats(sbx)
        size = stats.disk_bytes if stats else sbx.disk_mb * MiB
        if memory:
            size += stats.memory_bytes if stats else sbx.memory_mb * MiB
        ask = admission.Ask("this snapshot", disk=size, path=self.snapshots.root, stored=size)
        with self.admission.admit(ask, await self._usage(team_id)):
            return await self._snapshot(sbx, name, memory)

    async def _snapshot(self, sbx: records.LiveSandbox, name: str | None, memory: bool) -> store.SnapshotRecord:
        """`snapshot` once admitted."""
        snapshotting = self._snapshotting
        assert snapshotting is not None  # `snapshot` checked
        started = time.monotonic()
        async with self._table.turn(sbx, running_for="snapshotting"):
            snapshot_id, partial = await asyncio.to_thread(self.snapshots.new_snapshot_dir)
            with _driver_step("snapshot", sbx.id, "snapshotting the sandbox failed (it goes on running)"):
                await snapshotting.snapshot(sandbox_id=sbx.id, dest=partial, memory=memory)
                faults.crash_point("snapshot.taken")
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
        )
        _log_done("snapshot", f"{sbx.id} -> {snapshots.tag_of(row)}", started)
        return row

    def _is_template(self, name: str) -> bool:
        """Whether a template of this name is built (a snapshot must not hide it)."""
        return (self.settings.runtime.templates_dir / name / "current").exists()

    async def restart(
        self, team_id: str, sandbox_id: str, timeout: int | None = None
    ) -> records.LiveSandbox:
        """End every process of a running or paused sandbox and boot it clean on its own
        files, with its template's current build; it ends ``timeout`` (the server's default)
        from now. When the boot fails the sandbox is ended: nothing is left half-running."""
        sbx = self.get(team_id, sandbox_id)
        seconds = self._clamp_timeout(timeout)
        if sbx.state != PAUSED:
            await self._restart(sbx, seconds)
            return sbx
        with self.admission.admit(self._waking(sbx, "restarting it"), await self._usage()):
            await self._restart(sbx, seconds)
        return sbx

    async def _restart(self, sbx: records.LiveSandbox, seconds: int, *, if_paused: bool = False) -> bool:
        """Boot a sandbox clean on its files (see `restart`); with ``if_paused``, only if it
        is paused when its turn comes (False: it was running, and is left alone)."""
        restarting = self._restarting
        if restarting is None:
            raise errors.NotSupported("this runtime cannot restart sandboxes")
        failure: runtime_errors.RuntimeDriverError | None = None
        async with self._table.turn(sbx):
            if if_paused and sbx.state != PAUSED:
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
                self._forget(sbx.id)
                sbx.running_again(models.Boot.CLEAN, seconds)
                await asyncio.to_thread(self._records.save_state, sbx)
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

    async def metrics(self, team_id: str, sandbox_id: str) -> builtins.list[metrics.Metric]:
        """One point, now: CPU use since the previous call (or since the start), memory, disk."""
        sbx = self.get(team_id, sandbox_id)
        return await self._meter.read(sbx, changing=lambda: self._table.changing(sandbox_id))

    async def _usage(self, team_id: str | None = None) -> admission.Usage:
        """What running sandboxes hold now, and with ``team_id`` what that team's checkpoints
        and snapshots take, for `admission.Admission.admit`."""
        stored = 0
        if team_id is not None:
            paused = [s.id for s in self._live.values() if s.team_id == team_id and s.state == PAUSED]
            stored = await asyncio.to_thread(self.snapshots.team_bytes, team_id, paused)
        return await self._meter.usage(self._table.in_state(RUNNING), stored)

    # -- timers ----------------------------------------------------------------------------

    async def end_due(self) -> float | None:
        """Give every running sandbox past its end time, or idle for its idle timeout, its
        on-timeout action (kill, or pause when created to), and end what is past its retention
        (`expire`); seconds until the next such moment, if any. Paused sandboxes have no
        timer but the retention."""
        return await self._deadlines.end_due()

    async def expire(self) -> builtins.list[float]:
        """End paused sandboxes whose checkpoint, and delete snapshots that, are older than the
        retention; seconds until the next of them is due."""
        return await self._deadlines.expire()

    async def _time_out(self, sbx: records.LiveSandbox) -> None:
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
        return self._table.reachable(sandbox_id).access_token

    async def resolve(
        self, sandbox_id: str, access_token: str | None
    ) -> target.SandboxTarget:
        """The sandbox a sandbox-plane request names (`sandlot.runtime.target.Resolver`),
        resumed first when it is paused and was created with auto-resume (`resolver`)."""
        return await self._resolver(sandbox_id, access_token)
