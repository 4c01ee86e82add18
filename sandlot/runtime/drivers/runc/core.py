"""What every part of the runc driver stands on: its sandboxes in memory and on disk, runc
commands, init's reaper and veth, and taking a sandbox apart.

`RuncDriver` (`driver`) is `Core` with one layer a concern: `bundle.Bundles` makes a sandbox's
root filesystem and bundle and starts it, `criu.Criu` checkpoints, restores, forks and
snapshots it, `reconcile.Reconciling` makes the host agree with the records after a crash.
They share this class's state, so each layer's methods read as they would in one class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import shutil
import signal
from pathlib import Path
from typing import Any

from sandlot.config import RuntimeSettings
from sandlot.runtime import _utils, cgroups, disk, errors, models, mounts, network, oci
from sandlot.runtime.drivers.runc import host, state

__all__ = ["SANDBOX_ID", "Core"]

logger = logging.getLogger("sandlot.runtime.runc")

SANDBOX_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_INSTANCE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class Core:
    """The runc driver's state and the steps that every operation on a sandbox shares."""

    def __init__(self, settings: RuntimeSettings) -> None:
        if not _INSTANCE.match(settings.instance):
            raise ValueError(f"instance {settings.instance!r}: use 1-32 of a-z, 0-9 and '-'")
        self.settings = settings
        self.network = network.Network(
            instance=settings.instance, subnet=settings.subnet, conntrack_limit=settings.conntrack_limit
        )
        self._root = settings.data_dir / "runc"
        self._sandboxes_dir = settings.data_dir / "sandboxes"
        self._owner = settings.userns_base if settings.userns else 0
        self._disks = disk.Spares(
            settings.data_dir / "spares",
            size_mb=settings.default_limits.disk_mb,
            owner=self._owner,
            count=settings.spares,
        )
        self._sandboxes: dict[str, state.Sandbox] = {}
        self._reapers: dict[int, asyncio.Task[int]] = {}
        self._orphans: asyncio.Task[None] | None = None
        self._init_binary = ""
        self._runc = shutil.which("runc") or "runc"
        self._criu_config = self._root / "criu.conf"
        self._nofile = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

    def _get(self, sandbox_id: str) -> state.Sandbox:
        try:
            return self._sandboxes[sandbox_id]
        except KeyError:
            raise errors.SandboxNotFound(sandbox_id) from None

    def _info(self, sbx: state.Sandbox) -> models.SandboxInfo:
        alive = sbx.init_pid > 0 and host.alive(sbx.init_pid, self._reapers.get(sbx.init_pid))
        if sbx.checkpoint is not None or (alive and sbx.paused):
            status = models.SandboxState.PAUSED
        else:
            status = models.SandboxState.RUNNING if alive else models.SandboxState.STOPPED
        return models.SandboxInfo(
            sandbox_id=sbx.spec.sandbox_id,
            state=status,
            template=sbx.spec.template,
            created_at=sbx.created_at,
            limits=sbx.limits,
            network=sbx.spec.network,
            metadata=sbx.spec.metadata,
            address=sbx.link.address if sbx.link else "",
            init_pid=sbx.init_pid if alive else 0,
            checkpoint=Path(sbx.checkpoint) if sbx.checkpoint is not None else None,
        )

    def _cgroup(self, sandbox_id: str) -> str:
        return f"/sandlot-{self.settings.instance}/{sandbox_id}"

    def _save(self, sbx: state.Sandbox, *, durable: bool = False) -> None:
        state.write_json(self._sandboxes_dir / sbx.spec.sandbox_id / "state.json", sbx.to_json(), durable=durable)

    async def _runc_cmd(self, *args: str) -> str:
        return await _utils.run(self._runc, "--root", self._root, *args)

    def _watch(self, sbx: state.Sandbox) -> None:
        """Reap the sandbox's init when it exits (it is our child: we are its subreaper)."""
        pid = sbx.init_pid

        async def reap() -> int:
            try:
                return await _utils.wait_pid(pid)
            except (ChildProcessError, ProcessLookupError):
                return -1  # not our child (we restarted since) or already reaped

        self._reapers[pid] = asyncio.get_running_loop().create_task(reap())

    def _hook_args(self, link: network.Link) -> list[str]:
        return link.hook_args(ping_groups=(self._owner, self._owner + oci.ID_RANGE - 1))

    async def _wire(self, sbx: state.Sandbox) -> None:
        """Give a running sandbox a veth, as the create hook did, unless it has one."""
        assert sbx.link is not None
        if not os.path.exists(f"/sys/class/net/{sbx.link.veth}"):
            container = json.dumps({"pid": sbx.init_pid}).encode()
            await _utils.run(self._init_binary, *self._hook_args(sbx.link), input=container)

    def _frozen(self, sandbox_id: str) -> bool:
        return any(
            (d / "freezer.state").exists() and (d / "freezer.state").read_text().strip() == "FROZEN"
            for d in cgroups.cgroup_dirs(self._cgroup(sandbox_id))
        )

    async def _kill(self, sbx: state.Sandbox) -> None:
        """SIGKILL every process of the (frozen) sandbox before it runs again, and reap init."""
        cgroup = self._cgroup(sbx.spec.sandbox_id)
        if cgroups.cgroup_dirs(cgroup):
            await cgroups.kill_all(cgroup)
        reaper = self._reapers.pop(sbx.init_pid, None)
        if reaper is not None:
            await asyncio.wait_for(reaper, 10)  # an unreaped init makes a restore fail
        sbx.paused, sbx.init_pid = False, 0

    async def _release(self, sbx: state.Sandbox) -> None:
        """Remove what only a running sandbox holds: its container, cgroup, mounts and veth (a
        restore or boot makes them again). Its files, network slot and rules stay, and so does
        runc's state of the container, in ``container.json``, for `_restore_directly`. With no
        container (a restore that failed before it made one) the container.json of the
        checkpoint stays, so that the next try restores directly, as the first did."""
        sid = sbx.spec.sandbox_id
        sdir = self._sandboxes_dir / sid
        with contextlib.suppress(OSError, ValueError):
            state.write_json(sdir / state.CONTAINER, json.loads((self._root / sid / "state.json").read_text()))
        await self._runc_delete(sid, force=True)
        cgroups.remove(self._cgroup(sid))  # one that CRIU made for a restore that failed
        mounts.unmount(sdir / "bundle" / "rootfs")
        await disk.unmount(sdir / "disk")
        if sbx.link is not None:
            await self.network.remove_device(sbx.link)

    async def _teardown(self, sandbox_id: str, sbx: state.Sandbox | None) -> None:
        """Remove every piece of a sandbox that exists, in reverse order of creation.

        Each step runs even when an earlier one failed; the failures are raised together at
        the end, and the state directory stays until every step succeeded, so that a later
        destroy or reconcile can finish the job.
        """
        sdir = self._sandboxes_dir / sandbox_id
        link = sbx.link if sbx else None
        if link is None and sdir.exists():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                link = state.Sandbox.from_json(json.loads((sdir / "state.json").read_text())).link
        problems: list[str] = []

        async def step(what: str, coro: Any) -> None:
            try:
                await coro
            except Exception as exc:  # noqa: BLE001 - collected and raised below
                problems.append(f"{what}: {exc}")

        reaped = False
        if sbx is not None:
            await sbx.close_client()
            try:
                reaped = await self._kill_init(sbx)
            except Exception as exc:  # noqa: BLE001 - collected and raised below
                problems.append(f"reap init: {exc}")
        await step("runc delete", self._runc_delete(sandbox_id, force=not reaped or (sbx is not None and sbx.paused)))

        async def unmount() -> None:
            await step("unmount rootfs", asyncio.to_thread(mounts.unmount, sdir / "bundle" / "rootfs"))
            await step("unmount disk", disk.unmount(sdir / "disk"))

        async def disconnect() -> None:
            if link is not None:
                await step("network", self.network.release(link))

        await asyncio.gather(unmount(), disconnect())
        cgroups.remove(self._cgroup(sandbox_id))
        if not problems and sdir.exists():
            await step("remove files", asyncio.to_thread(shutil.rmtree, sdir, ignore_errors=False))
        if problems and not sdir.exists():
            problems.append("state directory vanished")
        self._sandboxes.pop(sandbox_id, None)
        if problems:
            raise errors.RuntimeDriverError(
                f"destroying sandbox {sandbox_id!r} left work undone: " + "; ".join(problems)
            )
        logger.debug("runc.destroy.complete %s", sandbox_id)

    async def _kill_init(self, sbx: state.Sandbox) -> bool:
        """Kill and reap the sandbox's init if it is our child; whether it was (else only
        `runc delete --force` can end the container)."""
        reaper = self._reapers.pop(sbx.init_pid, None)
        if reaper is None:
            return False
        if not reaper.done() and not sbx.paused:
            # Kill init ourselves (it is our unreaped child, so its pid cannot have been
            # reused): the pid namespace dies with it, while `runc delete --force` would
            # poll the container every 100 ms before noticing. A frozen one is left to runc.
            os.kill(sbx.init_pid, signal.SIGKILL)
        # Until init is reaped the kernel may still be tearing the pid namespace down,
        # and runc would find the container running.
        await asyncio.wait_for(reaper, 10)
        return True

    async def _runc_delete(self, sandbox_id: str, *, force: bool) -> None:
        try:
            await self._runc_cmd("delete", *(["--force"] if force else []), sandbox_id)
        except _utils.CommandError as exc:
            if "does not exist" not in exc.stderr and "not exist" not in exc.stderr:
                raise
