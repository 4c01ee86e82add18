"""Making the host and the runc driver's records agree again after the daemon stopped, killed
or not, in the middle of anything (`Reconciling.reconcile`)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Collection
from typing import Any

from sandlot.runtime import _utils, cgroups, errors, models
from sandlot.runtime.drivers.runc import core, host, state

__all__ = ["Reconciling"]

logger = logging.getLogger("sandlot.runtime.runc")


class Reconciling(core.Core):
    """Remove what belongs to no known sandbox, and finish or undo what a killed daemon left."""

    async def reconcile(self, *, known: Collection[str]) -> models.ReconcileReport:
        """Remove what the host holds of sandboxes outside ``known``, and make each known one
        whole again (`_recover`), once no runc of a killed predecessor is still at work."""
        await self._await_strays()
        for log in self._root.glob("*.log"):
            log.unlink()  # of a runc whose daemon was killed before it read the log
        known = set(known)
        on_host: set[str] = {p.name for p in self._sandboxes_dir.iterdir()}
        out = await self._runc_cmd("list", "--format", "json")
        containers = {c["id"]: c for c in json.loads(out or "null") or []}
        on_host |= set(containers)
        on_host |= {c.name for d in cgroups.cgroup_dirs(f"/sandlot-{self.settings.instance}")
                    for c in d.iterdir() if c.is_dir()}
        removed = []
        for sid in sorted(on_host - known):
            await self._teardown(sid, self._sandboxes.get(sid))
            removed.append(sid)
        await self.network.remove_strays()
        kept = sorted(known & set(self._sandboxes))
        for sid in list(kept):
            sbx = self._sandboxes[sid]
            try:
                await self._recover(sbx, containers.get(sid))
            except (errors.RuntimeDriverError, OSError, TimeoutError):
                logger.exception("runc.recover.failed %s: left as it was found", sid)
            if sbx.checkpoint is None and not host.alive(sbx.init_pid, None):
                # A destroy had killed its init when the daemon died (or the init died on
                # its own): nothing of it can run again, so finish the teardown and report
                # it missing, rather than keep a sandbox that answers nothing.
                logger.warning("runc.recover %s: its init is gone; finishing its teardown", sid)
                kept.remove(sid)
                try:
                    await self._teardown(sid, sbx)
                except errors.RuntimeDriverError:
                    logger.exception("runc.recover.failed %s: the next reconcile removes the rest", sid)
                continue
            if sbx.init_pid and sbx.init_pid not in self._reapers and host.alive(sbx.init_pid, None):
                self._watch(sbx)
        return models.ReconcileReport(
            kept=tuple(kept), removed=tuple(removed), missing=tuple(sorted(known - set(kept)))
        )

    async def _recover(self, sbx: state.Sandbox, container: dict[str, Any] | None) -> None:
        """Finish or undo what a daemon killed in the middle of a pause, resume, fork or
        snapshot left of this sandbox, from what state.json and runc say:

        ===========================  ===================  ======================================
        state.json                   runc's container     then
        ===========================  ===================  ======================================
        checkpoint and an init pid   any                  a pause had committed: its processes
                                                          are killed, the rest released; paused
        checkpoint, no init pid      running, or none     a resume had restored it (with runc,
                                     but a tree CRIU      or with CRIU alone: given runc's state
                                     restored in its      of it): adopted as it is, running (its
                                     cgroup               processes may have written to disk
                                                          since: restoring the images again
                                                          would not match the disk)
        checkpoint, no init pid      none, or stopped     a resume had not restored it: what it
                                                          had made is released; paused
        no checkpoint                running or frozen    thawed (a pause, fork or snapshot had
                                                          frozen it, or its filesystem), its veth
                                                          wired again if a pause had cut it; running
        ===========================  ===================  ======================================
        """
        sid = sbx.spec.sandbox_id
        pid = int(container["pid"]) if container and container.get("status") in ("running", "paused") else 0
        if sbx.checkpoint is not None and not sbx.init_pid and not pid:
            pid = self._restored_directly(sbx)
        if sbx.checkpoint is not None and not sbx.init_pid and pid:
            logger.warning("runc.recover %s: adopting the sandbox a resume had restored", sid)
            sbx.init_pid, sbx.checkpoint = pid, None
            self._save(sbx)
        elif sbx.checkpoint is not None:
            if sbx.init_pid or container is not None or os.path.ismount(self._sandboxes_dir / sid / "disk"):
                logger.warning("runc.recover %s: finishing a pause, or undoing a resume", sid)
                await self._kill(sbx)
                await self._release(sbx)
                self._save(sbx)
            return
        if not pid or pid != sbx.init_pid:
            return  # nothing of it runs (a host reboot ends every sandbox): nothing to thaw
        with contextlib.suppress(OSError):  # EINVAL: it was not frozen
            fd = os.open(self._sandboxes_dir / sid / "disk", os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.ioctl(fd, host.FITHAW, 0)
                logger.warning("runc.recover %s: thawed its filesystem", sid)
            finally:
                os.close(fd)
        if self._frozen(sid) and not sbx.paused:
            logger.warning("runc.recover %s: thawing it", sid)
            await self._runc_cmd("resume", sid)
        await self._wire(sbx)

    def _restored_directly(self, sbx: state.Sandbox) -> int:
        """The init of a sandbox that a `criu restore` of a killed daemon restored (it has no
        runc container yet: given one here), or 0."""
        sid = sbx.spec.sandbox_id
        sdir = self._sandboxes_dir / sid
        container = state.read_container(sdir)
        try:
            pid = int((sdir / "init.pid").read_text())
            with open(f"/proc/{pid}/cgroup") as f:
                ours = any(line.rstrip("\n").endswith(f":{self._cgroup(sid)}") for line in f)
        except (OSError, ValueError):
            return 0
        if container is None or not ours:
            return 0
        state.adopt_container(self._root, sid, container, pid, outputs="/dev/null")
        return pid

    async def _await_strays(self, timeout: float = 30.0) -> None:
        """Wait for the runc commands of this instance that outlived the daemon that started
        them: a `runc checkpoint` or `restore`, or a `criu restore` (`_restore_directly`), goes
        on to the end after its caller is killed, and until it is done the container it works
        on cannot be judged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while strays := (_utils.running_with(b"--root", os.fsencode(self._root))
                         | _utils.running_with(b"--config", os.fsencode(self._criu_config))):
            if loop.time() > deadline:
                logger.warning("runc.reconcile runc processes %s are still running after %.0f s",
                               sorted(strays), timeout)
                return
            await asyncio.sleep(0.02)
