"""`RuncDriver`: the `RuntimeDriver` protocol on runc, and the capabilities it has.

This module holds what every driver does (make, run processes in, pause, measure, destroy a
sandbox); the layers it stands on hold the rest (`core`, `bundle`, `criu`, `reconcile`).
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from sandlot.runtime import _utils, base, cgroups, disk, errors, initbin, initproto, models, oci
from sandlot.runtime.drivers.runc import bundle, core, criu, host, reconcile, state

__all__ = ["RuncDriver"]


class RuncDriver(
    criu.Criu, reconcile.Reconciling, base.Checkpointing, base.Forking, base.Snapshotting, base.Restarting
):
    """`RuntimeDriver` on runc, overlayfs, loop-mounted ext4 disks and network namespaces.

    Example:
        >>> driver = RuncDriver(Settings.from_env().runtime)
        >>> await driver.open()
        >>> info = await driver.create(spec=models.SandboxSpec(sandbox_id="demo"))
        >>> proc = await driver.start(sandbox_id="demo", process=models.ProcessSpec(["echo", "hi"]))
    """

    async def open(self) -> RuncDriver:
        """Prepare the host (directories, nftables table, init binary) and load known state."""
        if os.geteuid() != 0:
            raise errors.RuntimeDriverError("the runc driver must run as root")
        host.become_subreaper()
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # runc mounts the rootfs from inside the sandbox's user namespace: the path to it
        # must be traversable (x, not r) by the unprivileged uid that root inside maps to.
        self._sandboxes_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        if self.settings.userns:
            host.check_traversable(self._sandboxes_dir)
        self._init_binary = str(initbin.ensure_init_binary(self.settings.cache_dir))
        criu.keep_kerndat_tmpfs(self.settings.cache_dir / "criu")
        criu.write_config(self._criu_config, self._root / "criu-yard")
        cgroups.favor_dynamic_moves()
        for entry in sorted(self._sandboxes_dir.iterdir()):
            try:
                sbx = state.Sandbox.from_json(json.loads((entry / "state.json").read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # half-made or foreign: reconcile removes it
            self._sandboxes[sbx.spec.sandbox_id] = sbx
            if sbx.link is not None:
                self.network.adopt(sbx.link.slot)
        await self.network.open()
        self._disks.open()
        self._orphans = asyncio.get_running_loop().create_task(
            _utils.reap_orphans(1.0)
        )
        return self

    async def aclose(self) -> None:
        for sbx in self._sandboxes.values():
            await sbx.close_client()
        for task in [*self._reapers.values(), *([self._orphans] if self._orphans else [])]:
            task.cancel()
        self._reapers.clear()
        # Last call for orphans handed to us (nothing of ours is being waited for now).
        _utils.reap_orphans_now()
        await self._disks.close()
        if not any(self._sandboxes_dir.iterdir()):
            await self.network.close()
            cgroups.remove(f"/sandlot-{self.settings.instance}")

    async def __aenter__(self) -> RuncDriver:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sandboxes ---------------------------------------------------------------------

    async def create(self, *, spec: models.SandboxSpec) -> models.SandboxInfo:
        sid = spec.sandbox_id
        if not core.SANDBOX_ID.match(sid):
            raise ValueError(f"sandbox id {sid!r}: use 1-63 of a-z, 0-9 and '-', not starting with '-'")
        lower, template = self._template(spec.template)
        sdir = self._sandboxes_dir / sid
        try:
            sdir.mkdir(mode=0o711)
        except FileExistsError:
            raise errors.SandboxExists(sid) from None
        sbx = state.Sandbox(
            spec=spec,
            limits=spec.limits.clamp(self.settings.max_limits),
            link=None,
            lower=str(lower),
            created_at=datetime.now(UTC),
            token=secrets.token_hex(32),
        )
        try:
            sbx.link = self.network.allocate()
            state.write_json(sdir / "state.json", sbx.to_json())
            await self._make_rootfs(sbx, sdir)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.network.apply(sbx.link, spec.network))
                tg.create_task(self._run(sbx, sbx.link, sdir, template))
        except BaseException as exc:
            self._disks.refill()
            await asyncio.shield(self._teardown(sid, sbx))
            if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            if isinstance(exc, (errors.RuntimeDriverError, asyncio.CancelledError)):
                raise exc
            raise errors.RuntimeDriverError(f"creating sandbox {sid!r} failed: {exc}") from exc
        self._sandboxes[sid] = sbx
        state.write_json(sdir / "state.json", sbx.to_json())
        self._disks.refill()
        return self._info(sbx)

    async def info(self, *, sandbox_id: str) -> models.SandboxInfo:
        return self._info(self._get(sandbox_id))

    async def list(self) -> list[models.SandboxInfo]:
        return [self._info(s) for s in self._sandboxes.values()]

    # -- processes ---------------------------------------------------------------------

    def _running(self, sandbox_id: str) -> initproto.InitClient:
        sbx = self._get(sandbox_id)
        status = self._info(sbx).state
        if status is not models.SandboxState.RUNNING:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is {status.value}")
        if sbx.client is None:
            address = sbx.link.address if sbx.link else ""
            sbx.client = initproto.InitClient(address, oci.INIT_PORT, sbx.token.encode())
        return sbx.client

    async def start(self, *, sandbox_id: str, process: models.ProcessSpec) -> base.Process:
        return await self._running(sandbox_id).spawn(process)

    async def attach(self, *, sandbox_id: str, pid: int) -> base.Process:
        return await self._running(sandbox_id).attach(pid)

    async def processes(self, *, sandbox_id: str) -> builtins.list[models.ProcessInfo]:
        return await self._running(sandbox_id).list()

    # -- runner sandboxes: reset, files, limits --------------------------------------------

    def _runner(self, sandbox_id: str) -> state.Sandbox:
        sbx = self._get(sandbox_id)
        if not sbx.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not a runner sandbox")
        status = self._info(sbx).state
        if status is not models.SandboxState.RUNNING:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is {status.value}")
        return sbx

    async def reset(self, *, sandbox_id: str) -> None:
        """Make a runner sandbox as new for the next run: every process but init killed and
        reaped, its writable places emptied (the home directory back to the template's), the
        System V IPC objects and POSIX message queues of its IPC namespace removed, and its
        memory peak started over. Limits and network policy are left as `update` set them."""
        sbx = self._runner(sandbox_id)
        cgroup = self._cgroup(sandbox_id)
        try:
            await cgroups.kill_all(cgroup, but=sbx.init_pid)
            await host.in_own_thread(host.clear_ipc, sbx.init_pid)
            await asyncio.to_thread(self._fill_scratch, sbx, self._sandboxes_dir / sandbox_id / "disk")
            cgroups.reset_peak(cgroup)
        except (OSError, TimeoutError) as exc:
            raise errors.RuntimeDriverError(f"resetting sandbox {sandbox_id!r} failed: {exc}") from exc

    async def put_files(self, *, sandbox_id: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` (relative paths, ``src/main.rs``; directories are made) into a runner
        sandbox's working directory, owned by the template's user, for its next run.

        Only while nothing but init runs in it (just made, or just `reset`): then no path
        under the directory can be changed by the sandbox while it is written.
        """
        self._runner(sandbox_id)
        if cgroups.usage(self._cgroup(sandbox_id)).pids > 1:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is running something: reset it first")
        for name in files:
            parts = name.split("/")
            if name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in parts):
                raise ValueError(f"file name {name!r}: use a relative path without '.', '..' or empty parts")
        home = self._sandboxes_dir / sandbox_id / "disk" / "home"
        st = os.stat(home)
        await asyncio.to_thread(bundle.write_tree, home, files, st.st_uid, st.st_gid)

    async def update(
        self, *, sandbox_id: str, limits: models.Limits | None = None, network: models.NetworkPolicy | None = None
    ) -> None:
        """Change a running sandbox's memory, CPU and pids limits (clamped to the server's
        maximums; the disk cannot change) or its network policy, in place."""
        sbx = self._get(sandbox_id)
        if sbx.checkpoint is not None or sbx.link is None:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not running")
        changed = False
        if limits is not None:
            limits = limits.clamp(self.settings.max_limits)
            if limits.disk_mb != sbx.limits.disk_mb:
                raise ValueError("limits.disk_mb cannot change after a sandbox is made")
            if limits != sbx.limits:
                try:
                    cgroups.set_limits(self._cgroup(sandbox_id), limits)
                except OSError as exc:
                    raise errors.RuntimeDriverError(f"setting the limits of {sandbox_id!r} failed: {exc}") from exc
                sbx.limits, changed = limits, True
        if network is not None and network != sbx.spec.network:
            await self.network.apply(sbx.link, network)
            sbx.spec, changed = dataclasses.replace(sbx.spec, network=network), True
        if changed:
            self._save(sbx)

    # -- pause, restart, stats, destroy --------------------------------------------------

    async def pause(self, *, sandbox_id: str) -> None:
        sbx = self._get(sandbox_id)
        if sbx.paused or sbx.checkpoint is not None:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is already paused")
        await self._runc_cmd("pause", sandbox_id)
        sbx.paused = True
        self._save(sbx)

    async def resume(self, *, sandbox_id: str) -> None:
        sbx = self._get(sandbox_id)
        if not sbx.paused:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not paused")
        await self._runc_cmd("resume", sandbox_id)
        sbx.paused = False
        self._save(sbx)

    async def restart(self, *, sandbox_id: str) -> models.SandboxInfo:
        """End every process of a sandbox (running or checkpointed) and boot it clean on its
        own disk, with its template's ``current`` build and this driver's current init, on
        the same network slot. A checkpoint it had is no longer used (the caller removes it).

        The template is resolved first: when it is gone nothing is touched. When the boot
        fails the sandbox is left with no process, for `destroy`.
        """
        sbx = self._get(sandbox_id)
        lower, template = self._template(sbx.spec.template)
        self._init_binary = str(initbin.ensure_init_binary(self.settings.cache_dir))
        try:
            if sbx.checkpoint is None:
                await sbx.close_client()
                await self._kill(sbx)
                await self._release(sbx)
            sbx.lower, sbx.checkpoint, sbx.paused, sbx.init_pid = str(lower), None, False, 0
            self._save(sbx)
            await self._boot(sbx, template)
        except (OSError, ValueError, TimeoutError) as exc:
            raise errors.RuntimeDriverError(f"restarting sandbox {sandbox_id!r} failed: {exc}") from exc
        self._save(sbx)
        return self._info(sbx)

    async def stats(self, *, sandbox_id: str) -> models.Stats:
        sbx = self._get(sandbox_id)
        try:
            cg = cgroups.usage(self._cgroup(sandbox_id))
            du = disk.usage(self._sandboxes_dir / sandbox_id / "disk")
        except (OSError, ValueError) as exc:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} has no stats: {exc}") from exc
        return models.Stats(
            cpu_usage_ns=cg.cpu_usage_ns,
            cpu_cores=sbx.limits.cpu_cores,
            memory_bytes=cg.memory_bytes,
            memory_limit_bytes=sbx.limits.memory_mb * 1024 * 1024,
            disk_bytes=du.used,
            disk_limit_bytes=du.total,
            pids=cg.pids,
            memory_peak_bytes=cg.memory_peak_bytes,
            oom_kills=cg.oom_kills,
        )

    async def filesystem(self, *, sandbox_id: str) -> models.HostFilesystem:
        self._get(sandbox_id)
        return models.HostFilesystem(root=self._sandboxes_dir / sandbox_id / "bundle" / "rootfs", uid_base=self._owner)

    async def destroy(self, *, sandbox_id: str) -> None:
        sbx = self._sandboxes.get(sandbox_id)
        if sbx is None and not (self._sandboxes_dir / sandbox_id).exists():
            raise errors.SandboxNotFound(sandbox_id)
        await asyncio.shield(self._teardown(sandbox_id, sbx))
