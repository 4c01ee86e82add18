"""The local driver: each sandbox is an OCI bundle run by runc.

Layout under ``data_dir`` (one directory per sandbox, so that destroy and reconcile can find
every piece from the id alone)::

    runc/                      runc's --root: container state of this instance only, and
                               criu.conf with criu-yard/, CRIU's options (`_write_criu_config`)
    sandboxes/ID/state.json    what the driver needs to find, talk to and remove the sandbox
    sandboxes/ID/disk.img      sparse ext4 image: the disk limit (see sandlot.runtime.disk)
    sandboxes/ID/disk/         its mount point, holding upper/ and work/ of the overlay
    sandboxes/ID/bundle/       config.json and rootfs/, the overlay's mount point
    sandboxes/ID/container.json  runc's state of its container while it is checkpointed

A sandbox's PID 1 is sandlot-init (``sandlot/runtime/init/``), which reaps zombies and starts
processes on request over TCP at the sandbox's address: processes are started inside the
sandbox's process tree, not by ``runc exec`` from outside, so starting one costs a round trip
instead of a runc invocation, and nothing a process holds leads out of the sandbox (which is
what CRIU needs to checkpoint it). The token that opens init is handed over on a pipe
(``--preserve-fds``) and lives in state.json (mode 0600), never in the sandbox.

The daemon is the child subreaper of everything it starts: runc exits after starting a
container, so each container's init becomes our child and is reaped here (`_utils.wait_pid`).
"""

from __future__ import annotations

import builtins
import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import functools
import json
import logging
import os
import re
import resource
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sandlot.config import RuntimeSettings
from sandlot.runtime import _utils, base, cgroups, disk, errors, faults, images, initbin, initproto, models, mounts, network, oci

__all__ = ["RuncDriver"]

logger = logging.getLogger("sandlot.runtime.runc")

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_INSTANCE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_PR_SET_CHILD_SUBREAPER = 36
_DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_READY_TIMEOUT = 10.0
_CONTAINER = "container.json"
"""runc's state of a checkpointed sandbox's container, kept in its directory (`_release`)."""
_libc = ctypes.CDLL(None, use_errno=True)


@dataclasses.dataclass
class _Sandbox:
    """What the driver keeps about one sandbox; state.json holds the same."""

    spec: models.SandboxSpec
    limits: models.Limits
    link: network.Link | None
    lower: str
    created_at: datetime
    token: str
    init_pid: int = 0
    paused: bool = False
    """Frozen by the cgroup freezer: its processes are in memory, stopped."""
    checkpoint: str | None = None
    """Checkpointed to this image directory: no process, no mount, only files."""
    client: initproto.InitClient | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": {
                "sandbox_id": self.spec.sandbox_id,
                "template": self.spec.template,
                "limits": dataclasses.asdict(self.spec.limits),
                "network": dataclasses.asdict(self.spec.network),
                "env": dict(self.spec.env),
                "metadata": dict(self.spec.metadata),
                "hostname": self.spec.hostname,
                "runner": self.spec.runner,
            },
            "limits": dataclasses.asdict(self.limits),
            "link": dataclasses.asdict(self.link) if self.link else None,
            "lower": self.lower,
            "created_at": self.created_at.isoformat(),
            "token": self.token,
            "init_pid": self.init_pid,
            "paused": self.paused,
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Sandbox:
        s = data["spec"]
        spec = models.SandboxSpec(
            sandbox_id=s["sandbox_id"],
            template=s["template"],
            limits=models.Limits(**s["limits"]),
            network=models.NetworkPolicy(**s["network"]),
            env=s["env"],
            metadata=s["metadata"],
            hostname=s["hostname"],
            runner=s.get("runner", False),
        )
        return cls(
            spec=spec,
            limits=models.Limits(**data["limits"]),
            link=network.Link(**data["link"]) if data["link"] else None,
            lower=data["lower"],
            created_at=datetime.fromisoformat(data["created_at"]),
            token=data["token"],
            init_pid=data["init_pid"],
            paused=data["paused"],
            checkpoint=data.get("checkpoint"),
        )


@dataclasses.dataclass(frozen=True)
class _Origin:
    """What a copy of a sandbox (a fork, a sandbox made from a snapshot) inherits from it."""

    template: str
    lower: str
    """The template build it ran on: files and memory images refer to exactly that one."""
    limits: models.Limits
    hostname: str
    token: str
    """init's token, which a copy restored from memory keeps (it lives in that memory)."""

    @classmethod
    def of(cls, sbx: _Sandbox) -> _Origin:
        return cls(
            template=sbx.spec.template,
            lower=sbx.lower,
            limits=sbx.limits,
            hostname=sbx.spec.hostname or sbx.spec.sandbox_id,
            token=sbx.token,
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "limits": dataclasses.asdict(self.limits)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Origin:
        return cls(
            template=data["template"],
            lower=data["lower"],
            limits=models.Limits(**data["limits"]),
            hostname=data["hostname"],
            token=data["token"],
        )


class RuncDriver:
    """`RuntimeDriver` on runc, overlayfs, loop-mounted ext4 disks and network namespaces.

    Example:
        >>> driver = RuncDriver(Settings.from_env().runtime)
        >>> await driver.open()
        >>> info = await driver.create(spec=models.SandboxSpec(sandbox_id="demo"))
        >>> proc = await driver.start(sandbox_id="demo", process=models.ProcessSpec(["echo", "hi"]))
    """

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
        self._sandboxes: dict[str, _Sandbox] = {}
        self._reapers: dict[int, asyncio.Task[int]] = {}
        self._orphans: asyncio.Task[None] | None = None
        self._init_binary = ""
        self._runc = shutil.which("runc") or "runc"
        self._criu_config = self._root / "criu.conf"
        self._nofile = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

    # -- driver lifecycle ------------------------------------------------------------------

    async def open(self) -> RuncDriver:
        """Prepare the host (directories, nftables table, init binary) and load known state."""
        if os.geteuid() != 0:
            raise errors.RuntimeDriverError("the runc driver must run as root")
        _become_subreaper()
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # runc mounts the rootfs from inside the sandbox's user namespace: the path to it
        # must be traversable (x, not r) by the unprivileged uid that root inside maps to.
        self._sandboxes_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        if self.settings.userns:
            _check_traversable(self._sandboxes_dir)
        self._init_binary = str(initbin.ensure_init_binary(self.settings.cache_dir))
        _keep_kerndat_tmpfs(self.settings.cache_dir / "criu")
        _write_criu_config(self._criu_config, self._root / "criu-yard")
        cgroups.favor_dynamic_moves()
        for entry in sorted(self._sandboxes_dir.iterdir()):
            try:
                sbx = _Sandbox.from_json(json.loads((entry / "state.json").read_text()))
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
            await _close_client(sbx)
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
        if not _ID.match(sid):
            raise ValueError(f"sandbox id {sid!r}: use 1-63 of a-z, 0-9 and '-', not starting with '-'")
        lower, template = self._template(spec.template)
        sdir = self._sandboxes_dir / sid
        try:
            sdir.mkdir(mode=0o711)
        except FileExistsError:
            raise errors.SandboxExists(sid) from None
        sbx = _Sandbox(
            spec=spec,
            limits=spec.limits.clamp(self.settings.max_limits),
            link=None,
            lower=str(lower),
            created_at=datetime.now(timezone.utc),
            token=secrets.token_hex(32),
        )
        try:
            sbx.link = self.network.allocate()
            _write_json(sdir / "state.json", sbx.to_json())
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
        _write_json(sdir / "state.json", sbx.to_json())
        self._disks.refill()
        return self._info(sbx)

    def _template(self, name: str) -> tuple[Path, dict[str, Any]]:
        """The template's built directory (the ``current`` digest, resolved now so that a
        rebuild never changes the lower layer under a running sandbox) and its metadata."""
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
            raise errors.TemplateNotFound(name)
        current = self.settings.templates_dir / name / "current"
        try:
            built = current.resolve(strict=True)
            meta = json.loads((built / "template.json").read_text())
        except (OSError, ValueError):
            raise errors.TemplateNotFound(name) from None
        return built / "rootfs", meta

    async def _make_rootfs(self, sbx: _Sandbox, sdir: Path) -> None:
        owner = self._owner
        image, mnt = sdir / "disk.img", sdir / "disk"
        for d in (mnt, sdir / "bundle" / "rootfs"):
            d.mkdir(parents=True)
        if sbx.spec.runner:
            # No disk image: the scratch tmpfs is the disk, and `reset` empties it.
            mb = sbx.limits.disk_mb
            mounts.mount("tmpfs", mnt, "tmpfs", flags=mounts.MS_NOSUID | mounts.MS_NODEV,
                         options=f"size={mb}m,nr_inodes={mb * 64},mode=0711,uid={owner},gid={owner}")  # fmt: skip
            await asyncio.to_thread(self._fill_scratch, sbx, mnt)
        else:
            await self._disks.take(image, size_mb=sbx.limits.disk_mb)
            disk.mount(image, mnt)
        for d in (mnt / "upper", mnt / "work"):
            d.mkdir()
            os.chown(d, owner, owner)
        _write_etc(mnt / "upper", sbx, owner)
        self._mount_overlay(sbx, sdir)

    def _mount_overlay(self, sbx: _Sandbox, sdir: Path) -> None:
        """The sandbox's root: its template build below, the upper layer of its disk above.
        ``nodev``: a device node in the template or made by the sandbox opens nothing."""
        upper, work = sdir / "disk" / "upper", sdir / "disk" / "work"
        mounts.mount("overlay", sdir / "bundle" / "rootfs", "overlay", flags=mounts.MS_NODEV,
                     options=f"lowerdir={sbx.lower},upperdir={upper},workdir={work}")  # fmt: skip

    def _fill_scratch(self, sbx: _Sandbox, scratch: Path) -> None:
        """Make (or, after a run, make again) a runner sandbox's writable places as new: empty
        ``tmp``, ``var-tmp`` and ``shm``, and a ``home`` holding only what the template's
        working directory holds. Nothing in the sandbox runs while this happens, so no path
        here can change under it; entries are removed without following links."""
        workdir = _template_meta(sbx.lower).get("workdir", "/home/user")
        for name in (*oci.SCRATCH_DIRS, "home"):
            d = scratch / name
            d.mkdir(exist_ok=True)
            with os.scandir(d) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
            if name == "home":
                _mirror(Path(sbx.lower) / workdir.lstrip("/"), d)
            else:
                os.chown(d, self._owner, self._owner)
                os.chmod(d, 0o1777)

    def _write_config(
        self, sbx: _Sandbox, link: network.Link, sdir: Path, template: dict[str, Any], *, hook: bool = True
    ) -> None:
        sid = sbx.spec.sandbox_id
        config = oci.bundle_config(
            hostname=sbx.spec.hostname or sid,
            env={**_DEFAULT_ENV, **template.get("env", {}), **sbx.spec.env},
            limits=sbx.limits,
            network_hook=self._hook_args(link) if hook else None,
            cgroups_path=self._cgroup(sid),
            criu_config=self._criu_config,
            init_binary=self._init_binary,
            userns_base=self.settings.userns_base if self.settings.userns else None,
            nofile=self._nofile,
            scratch=sdir / "disk" if sbx.spec.runner else None,
            workdir=template.get("workdir", "/home/user"),
        )
        _write_json(sdir / "bundle" / "config.json", config)

    async def _run(self, sbx: _Sandbox, link: network.Link, sdir: Path, template: dict[str, Any]) -> None:
        sid = sbx.spec.sandbox_id
        self._write_config(sbx, link, sdir, template)
        bundle = sdir / "bundle"
        token_r, token_w = os.pipe()
        ready_r, ready_w = os.pipe()
        try:
            os.write(token_w, sbx.token.encode())
            os.close(token_w)
            token_w = -1
            pid_file = sdir / "init.pid"
            await _utils.run(
                self._runc, "--root", self._root, "run", "--detach", "--no-new-keyring", "--pid-file", pid_file,
                "--preserve-fds", "2", "--bundle", bundle, sid,
                fds={3: token_r, 4: ready_w},
            )  # fmt: skip
            os.close(ready_w)
            ready_w = -1
            sbx.init_pid = int(pid_file.read_text())
            self._watch(sbx)
            if await asyncio.wait_for(_read_byte(ready_r), _READY_TIMEOUT) != b"1":
                raise errors.RuntimeDriverError(f"sandbox {sid!r}: init exited before it was ready")
        finally:
            for fd in (token_r, token_w, ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)

    def _cgroup(self, sandbox_id: str) -> str:
        return f"/sandlot-{self.settings.instance}/{sandbox_id}"

    def _watch(self, sbx: _Sandbox) -> None:
        """Reap the sandbox's init when it exits (it is our child: we are its subreaper)."""
        pid = sbx.init_pid

        async def reap() -> int:
            try:
                return await _utils.wait_pid(pid)
            except (ChildProcessError, ProcessLookupError):
                return -1  # not our child (we restarted since) or already reaped

        self._reapers[pid] = asyncio.get_running_loop().create_task(reap())

    async def info(self, *, sandbox_id: str) -> models.SandboxInfo:
        return self._info(self._get(sandbox_id))

    async def list(self) -> list[models.SandboxInfo]:
        return [self._info(s) for s in self._sandboxes.values()]

    def _get(self, sandbox_id: str) -> _Sandbox:
        try:
            return self._sandboxes[sandbox_id]
        except KeyError:
            raise errors.SandboxNotFound(sandbox_id) from None

    def _info(self, sbx: _Sandbox) -> models.SandboxInfo:
        alive = sbx.init_pid > 0 and _alive(sbx.init_pid, self._reapers.get(sbx.init_pid))
        if sbx.checkpoint is not None or (alive and sbx.paused):
            state = models.SandboxState.PAUSED
        else:
            state = models.SandboxState.RUNNING if alive else models.SandboxState.STOPPED
        return models.SandboxInfo(
            sandbox_id=sbx.spec.sandbox_id,
            state=state,
            template=sbx.spec.template,
            created_at=sbx.created_at,
            limits=sbx.limits,
            network=sbx.spec.network,
            metadata=sbx.spec.metadata,
            address=sbx.link.address if sbx.link else "",
            init_pid=sbx.init_pid if alive else 0,
            checkpoint=Path(sbx.checkpoint) if sbx.checkpoint is not None else None,
        )

    # -- processes ---------------------------------------------------------------------

    def _running(self, sandbox_id: str) -> initproto.InitClient:
        sbx = self._get(sandbox_id)
        state = self._info(sbx).state
        if state is not models.SandboxState.RUNNING:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is {state.value}")
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

    def _runner(self, sandbox_id: str) -> _Sandbox:
        sbx = self._get(sandbox_id)
        if not sbx.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not a runner sandbox")
        state = self._info(sbx).state
        if state is not models.SandboxState.RUNNING:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is {state.value}")
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
            await _in_own_thread(_clear_ipc, sbx.init_pid)
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
        await asyncio.to_thread(_write_tree, home, files, st.st_uid, st.st_gid)

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

    # -- pause, stats, destroy ----------------------------------------------------------

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

    # -- checkpoint and restore (CRIU) ----------------------------------------------------

    async def checkpoint(self, *, sandbox_id: str, image_dir: Path) -> None:
        """Dump the sandbox's processes into ``image_dir`` (which must not exist yet) and stop
        them: until `restore` the sandbox holds no memory, no CPU and no mount; its network
        slot (address and rules) stays reserved.

        The order makes a daemon killed at any step leave the sandbox whole (`reconcile` says
        what it finds): the processes are frozen and cut off the network (their veth is
        deleted, so no packet reaches or leaves their sockets until the restore wires a new
        one, as CRIU's own network lock would have it), dumped and left in place, the images
        sealed (`images.seal`), the checkpoint recorded in state.json (the commit point), and
        only then are the processes killed, still frozen: they never run another instruction
        after the dump. Before the commit a restart finds the sandbox running; after it,
        paused with a complete checkpoint. Connections to init are closed first: a stream the
        host held ends here.
        """
        sbx = self._get(sandbox_id)
        self._check_capturable(sbx, "checkpointed")
        self._check_image_parent(image_dir.parent)
        assert sbx.link is not None
        await _close_client(sbx)
        froze = not (sbx.paused or self._frozen(sandbox_id))
        if froze:
            # Freezing first spares CRIU its own (slow, polling) freeze of a v1 cgroup.
            await self._runc_cmd("pause", sandbox_id)
        try:
            await self.network.remove_device(sbx.link)
            faults.crash_point("pause.frozen")
            await self._dump(sbx, image_dir, op="pause")
        except BaseException:
            await asyncio.shield(self._go_on(sbx, thaw=froze))
            raise
        sbx.checkpoint = str(image_dir)
        # The commit: from here on the processes are in the checkpoint, even after a power cut.
        self._save(sbx, durable=True)
        faults.crash_point("pause.committed")
        await self._kill(sbx)
        faults.crash_point("pause.killed")
        await self._release(sbx)
        self._save(sbx)

    def _check_capturable(self, sbx: _Sandbox, what: str) -> None:
        sid = sbx.spec.sandbox_id
        if sbx.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sid!r} is a runner sandbox: it cannot be {what}")
        if sbx.checkpoint is not None:
            raise errors.SandboxStateError(f"sandbox {sid!r} is already checkpointed")
        if self._info(sbx).state is models.SandboxState.STOPPED:
            raise errors.SandboxStateError(f"sandbox {sid!r} is not running")

    async def _dump(self, sbx: _Sandbox, image_dir: Path, *, op: str) -> None:
        """CRIU-dump the processes of the frozen sandbox into ``image_dir``, leaving them frozen
        where they are; the images are written to `images.partial` and sealed into place."""
        sid = sbx.spec.sandbox_id
        work = self._sandboxes_dir / sid / "criu-work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(mode=0o700)
        written = images.partial(image_dir)
        written.mkdir(mode=0o700)
        try:
            await self._criu(
                "checkpoint", "--image-path", str(written), "--work-path", str(work),
                "--tcp-established", "--leave-running", sid, running=f"{op}.dumping",
            )  # fmt: skip
            await asyncio.to_thread(images.seal, image_dir, group=self._owner)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, written, True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        faults.crash_point(f"{op}.dumped")

    async def _go_on(self, sbx: _Sandbox, *, thaw: bool) -> None:
        """Undo a pause that did not commit: the sandbox gets its veth back and runs on."""
        await self._wire(sbx)
        if thaw:
            await self._runc_cmd("resume", sbx.spec.sandbox_id)

    async def _wire(self, sbx: _Sandbox) -> None:
        """Give a running sandbox a veth, as the create hook did, unless it has one."""
        assert sbx.link is not None
        if not os.path.exists(f"/sys/class/net/{sbx.link.veth}"):
            state = json.dumps({"pid": sbx.init_pid}).encode()
            await _utils.run(self._init_binary, *self._hook_args(sbx.link), input=state)

    def _hook_args(self, link: network.Link) -> list[str]:
        return link.hook_args(ping_groups=(self._owner, self._owner + oci.ID_RANGE - 1))

    async def _kill(self, sbx: _Sandbox) -> None:
        """SIGKILL every process of the (frozen) sandbox before it runs again, and reap init."""
        cgroup = self._cgroup(sbx.spec.sandbox_id)
        if cgroups.cgroup_dirs(cgroup):
            await cgroups.kill_all(cgroup)
        reaper = self._reapers.pop(sbx.init_pid, None)
        if reaper is not None:
            await asyncio.wait_for(reaper, 10)  # an unreaped init makes a restore fail
        sbx.paused, sbx.init_pid = False, 0

    async def _release(self, sbx: _Sandbox) -> None:
        """Remove what only a running sandbox holds: its container, cgroup, mounts and veth (a
        restore or boot makes them again). Its files, network slot and rules stay, and so does
        runc's state of the container, in ``container.json``, for `_restore_directly`."""
        sid = sbx.spec.sandbox_id
        sdir = self._sandboxes_dir / sid
        try:
            _write_json(sdir / _CONTAINER, json.loads((self._root / sid / "state.json").read_text()))
        except (OSError, ValueError):
            (sdir / _CONTAINER).unlink(missing_ok=True)  # no container: nothing to restore directly
        await self._runc_delete(sid, force=True)
        cgroups.remove(self._cgroup(sid))  # one that CRIU made for a restore that failed
        mounts.unmount(sdir / "bundle" / "rootfs")
        await disk.unmount(sdir / "disk")
        if sbx.link is not None:
            await self.network.remove_device(sbx.link)

    async def restore(self, *, sandbox_id: str) -> models.SandboxInfo:
        """Bring a checkpointed sandbox back: every process goes on where it was.

        The images are checked first (`images.check`): a damaged checkpoint is refused, naming
        the file, and the sandbox stays checkpointed. A daemon killed once runc has restored
        it finds it running on the next start (`reconcile`).
        """
        sbx = self._get(sandbox_id)
        if sbx.checkpoint is None:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not checkpointed")
        await self._restore(sbx, Path(sbx.checkpoint), op="resume", check=True)
        faults.crash_point("resume.restored")
        sbx.checkpoint = None
        self._save(sbx)
        return self._info(sbx)

    async def fork(
        self, *, sandbox_id: str, children: Sequence[models.SandboxSpec], image_dir: Path
    ) -> builtins.list[models.SandboxInfo]:
        """New sandboxes, each a copy of ``sandbox_id``'s memory and files as they are now.

        The original is frozen for the checkpoint (kept in ``image_dir``, which must not
        exist) and the copy of its disk, then goes on. Each copy owns everything it runs on:
        its disk image, network slot and address; none reads the original's memory at run
        time. A copy keeps the original's hostname and processes, with new pids outside.
        """
        parent = self._get(sandbox_id)
        if parent.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is a runner sandbox: it cannot be forked")
        if self._info(parent).state is not models.SandboxState.RUNNING:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not running")

        async def fill(disks: Sequence[Path]) -> None:
            await self._capture(parent, image_dir=image_dir, disks=disks, op="fork")

        return await self._copies(children, _Origin.of(parent), fill=fill, image_dir=image_dir, op="fork")

    async def snapshot(self, *, sandbox_id: str, dest: Path, memory: bool = True) -> None:
        """Copy a running sandbox's files, and its memory unless ``memory`` is false, into
        ``dest`` (made here; its parent must be private as for `checkpoint`), for
        `create_from_snapshot`. The sandbox is frozen for the moment of the copy, then goes on.

        ``dest`` holds ``disk.img`` (a sparse copy of the disk), ``memory/`` (CRIU images) and
        ``runtime.json`` (what a copy needs: template build, limits, hostname, init's token;
        mode 0600). Nothing in it refers to the source: it may be gone when a copy is made.
        """
        sbx = self._get(sandbox_id)
        if sbx.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is a runner sandbox: it cannot be snapshotted")
        if self._info(sbx).state is not models.SandboxState.RUNNING:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not running")
        self._check_image_parent(dest.parent)
        dest.mkdir(mode=0o710)
        try:
            os.chown(dest, 0, self._owner)
            await self._capture(
                sbx, image_dir=dest / "memory" if memory else None, disks=[dest / "disk.img"], op="snapshot"
            )
            _write_json(dest / "runtime.json", {**_Origin.of(sbx).to_json(), "memory": memory})
        except BaseException as exc:
            await asyncio.to_thread(shutil.rmtree, dest, True)
            if isinstance(exc, errors.RuntimeDriverError | asyncio.CancelledError):
                raise
            raise errors.RuntimeDriverError(f"snapshotting sandbox {sandbox_id!r} failed: {exc}") from exc

    async def create_from_snapshot(self, *, spec: models.SandboxSpec, source: Path) -> models.SandboxInfo:
        """A new sandbox on a copy of the files of a `snapshot` in ``source``: restored from its
        memory (its processes go on) when it has one, else booted clean. Only ``spec``'s id,
        network policy, environment and metadata are used; template build, limits and hostname
        are the snapshot's. ``source`` is only read, and not needed once this returns."""
        try:
            meta = json.loads((source / "runtime.json").read_text())
            origin = _Origin.from_json(meta)
            memory = bool(meta["memory"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise errors.RuntimeDriverError(f"snapshot {source} is not readable: {exc}") from exc
        if not (Path(origin.lower).parent / "template.json").exists():
            raise errors.TemplateNotFound(f"{origin.template} (the build {origin.lower} the snapshot was taken on)")

        async def fill(disks: Sequence[Path]) -> None:
            await asyncio.to_thread(_copy_sparse, source / "disk.img", disks[0])

        made = await self._copies([spec], origin, fill=fill, image_dir=source / "memory" if memory else None, op="create")
        return made[0]

    async def _capture(self, sbx: _Sandbox, *, image_dir: Path | None, disks: Sequence[Path], op: str) -> None:
        """Copy a running sandbox's disk image to each of ``disks`` and, given ``image_dir``,
        checkpoint its processes there, leaving them running; frozen for the time it takes.

        A copy gets a new address, and CRIU cannot restore a TCP connection of init's whose
        local end is the original's address: ours are closed, and init is given a moment to
        close its ends, before the freeze (a checkpoint would close them only after it).
        A filesystem-only capture freezes the filesystem, not the processes. A daemon killed
        meanwhile leaves the sandbox frozen; the next start thaws it (`reconcile`).
        """
        sid = sbx.spec.sandbox_id
        sdir = self._sandboxes_dir / sid
        if image_dir is not None:
            await _close_client(sbx)
            await _wait_init_quiet(sbx.init_pid)
            await self._runc_cmd("pause", sid)
        try:
            if image_dir is not None:
                faults.crash_point(f"{op}.frozen")
                await self._dump(sbx, image_dir, op=op)
            with _frozen_filesystem(sdir / "disk"):
                faults.crash_point(f"{op}.disk_frozen")
                for dest in disks:
                    await asyncio.to_thread(_copy_sparse, sdir / "disk.img", dest)
        finally:
            if image_dir is not None:
                await self._runc_cmd("resume", sid)

    async def _copies(
        self,
        specs: Sequence[models.SandboxSpec],
        origin: _Origin,
        *,
        fill: Callable[[Sequence[Path]], Awaitable[None]],
        image_dir: Path | None,
        op: str,
    ) -> builtins.list[models.SandboxInfo]:
        """New sandboxes on copies of one disk: ``fill`` writes each one's ``disk.img``, then
        each is restored from ``image_dir`` or, without it, booted clean. All or none.

        Until the caller records them, a daemon killed meanwhile leaves copies that nobody
        knows, which the next start removes (`reconcile`)."""
        for spec in specs:
            if not _ID.match(spec.sandbox_id):
                raise ValueError(f"sandbox id {spec.sandbox_id!r}: use 1-63 of a-z, 0-9 and '-'")
        made: list[_Sandbox] = []
        try:
            for spec in specs:
                made.append(self._new_copy(spec, origin, same_memory=image_dir is not None))
            await fill([self._sandboxes_dir / c.spec.sandbox_id / "disk.img" for c in made])
            template = {} if image_dir else json.loads((Path(origin.lower).parent / "template.json").read_text())
            for child in made:
                assert child.link is not None
                await self.network.apply(child.link, child.spec.network)
                if image_dir is not None:
                    # A fork's images were sealed by this very call; a snapshot's are checked.
                    await self._restore(child, image_dir, op=op, check=op != "fork")
                    faults.crash_point(f"{op}.restored")
                else:
                    await self._boot(child, template)
                self._sandboxes[child.spec.sandbox_id] = child
                self._save(child)
        except BaseException as exc:
            for child in made:
                await asyncio.shield(self._teardown(child.spec.sandbox_id, child))
            if isinstance(exc, errors.RuntimeDriverError | ValueError | asyncio.CancelledError):
                raise
            raise errors.RuntimeDriverError(f"copying sandbox {origin.hostname!r} failed: {exc}") from exc
        return [self._info(child) for child in made]

    def _new_copy(self, spec: models.SandboxSpec, origin: _Origin, *, same_memory: bool) -> _Sandbox:
        """The state (and directories) of a sandbox about to run on a copy of ``origin``."""
        sdir = self._sandboxes_dir / spec.sandbox_id
        try:
            sdir.mkdir(mode=0o711)
        except FileExistsError:
            raise errors.SandboxExists(spec.sandbox_id) from None
        child = _Sandbox(
            spec=dataclasses.replace(spec, template=origin.template, hostname=origin.hostname),
            limits=origin.limits,
            link=None,
            lower=origin.lower,
            created_at=datetime.now(timezone.utc),
            # init's token lives in the memory a restored copy starts from
            token=origin.token if same_memory else secrets.token_hex(32),
        )
        try:
            child.link = self.network.allocate()
        except BaseException:
            sdir.rmdir()
            raise
        self._save(child)
        for d in (sdir / "disk", sdir / "bundle" / "rootfs"):
            d.mkdir(parents=True)
        return child

    async def _boot(self, sbx: _Sandbox, template: dict[str, Any]) -> None:
        """Start a sandbox whose disk holds its files already: a fresh init, no old process."""
        sdir = self._sandboxes_dir / sbx.spec.sandbox_id
        assert sbx.link is not None
        disk.mount(sdir / "disk.img", sdir / "disk")
        self._mount_overlay(sbx, sdir)
        (sdir / "init.pid").unlink(missing_ok=True)
        await self._run(sbx, sbx.link, sdir, template)

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
                await _close_client(sbx)
                await self._kill(sbx)
                await self._release(sbx)
            sbx.lower, sbx.checkpoint, sbx.paused, sbx.init_pid = str(lower), None, False, 0
            self._save(sbx)
            await self._boot(sbx, template)
        except (OSError, ValueError, TimeoutError) as exc:
            raise errors.RuntimeDriverError(f"restarting sandbox {sandbox_id!r} failed: {exc}") from exc
        self._save(sbx)
        return self._info(sbx)

    async def _restore(self, sbx: _Sandbox, image_dir: Path, *, op: str, check: bool) -> None:
        """Run the sandbox's processes again from ``image_dir`` on its own disk, after checking
        the images unless ``check`` is false (they were sealed by the calling operation)."""
        sid = sbx.spec.sandbox_id
        sdir = self._sandboxes_dir / sid
        assert sbx.link is not None
        criu_work = sdir / "criu-work"
        pid_file = sdir / "init.pid"
        # The images are checked in a thread while the disk is mounted, and before CRIU runs.
        checked = asyncio.ensure_future(asyncio.to_thread(images.check, image_dir)) if check else None
        container = _read_container(sdir)
        try:
            try:
                disk.mount(sdir / "disk.img", sdir / "disk")
                self._mount_overlay(sbx, sdir)
                if container is None:
                    self._write_config(sbx, sbx.link, sdir, _template_meta(sbx.lower), hook=False)
                shutil.rmtree(criu_work, ignore_errors=True)
                criu_work.mkdir(mode=0o700)
                pid_file.unlink(missing_ok=True)
            finally:
                if checked is not None:
                    await asyncio.shield(checked)
            faults.crash_point(f"{op}.mounted")
            if container is not None:
                await self._restore_directly(sbx, image_dir, container, criu_work, pid_file, running=f"{op}.restoring")
            else:
                # runc's output goes to a file: the restored tree may hold a pipe open for ever.
                await self._criu(
                    "restore", "--detach", "--image-path", str(image_dir), "--work-path", str(criu_work),
                    "--tcp-established", "--bundle", str(sdir / "bundle"),
                    "--pid-file", str(pid_file), sid, running=f"{op}.restoring",
                )  # fmt: skip
            sbx.init_pid = int(pid_file.read_text())
            self._watch(sbx)
            await self._wire(sbx)
        except BaseException:
            await asyncio.shield(self._undo_restore(sbx))
            raise
        sbx.paused = False
        shutil.rmtree(criu_work, ignore_errors=True)

    async def _undo_restore(self, sbx: _Sandbox) -> None:
        """Remove what a failed restore made: the processes CRIU had restored so far (a
        killed CRIU leaves them half made, in the sandbox's cgroup), then what `_release`
        removes. The checkpoint is untouched: the sandbox stays paused on it."""
        cgroup = self._cgroup(sbx.spec.sandbox_id)
        restored = cgroups.members(cgroup)
        if restored:
            await cgroups.kill_all(cgroup)
            _utils.reap_orphans_now(among=restored)  # the restored tree's root is our child
        await self._release(sbx)
        sbx.init_pid = 0

    async def _restore_directly(
        self, sbx: _Sandbox, image_dir: Path, container: dict[str, Any], work: Path, pid_file: Path, *, running: str
    ) -> None:
        """Restore a sandbox from its own checkpoint with CRIU alone, as `runc restore` would
        (the same CRIU options, external mounts and inherited pipes), then give runc back its
        state of the container (`_adopt_container`): runc pauses, checkpoints and deletes it
        from then on as one it had restored itself. runc's own share of a restore is ~15 ms
        of ~100 here (its start, a CRIU run only to learn CRIU's version, its cgroup setup).

        CRIU makes the cgroup, with the limits and device rules of the images (those of the
        sandbox at the checkpoint), and with its freezer state too, frozen: it is thawed here.
        Copies of other sandboxes (fork, snapshots) go through runc, which writes their state.
        """
        sid = sbx.spec.sandbox_id
        config = container["config"]
        binds = [f"{m['destination']}:{m['source']}" for m in config.get("mounts") or [] if m.get("device") == "bind"]
        binds += [f"{d['path']}:{d['path']}" for d in config.get("devices") or []]
        if config.get("mask_paths"):
            binds.append("/dev/null:/dev/null")
        descriptors = json.loads((image_dir / "descriptors.json").read_text())
        log = self._root / f"restore-{sid}.log"
        await self._criu_run(
            [str(self._criu_binary()), "restore", "--config", str(self._criu_config),
             "--images-dir", str(image_dir), "--work-dir", str(work), "--log-file", "restore.log",
             "--root", str(self._sandboxes_dir / sid / "bundle" / "rootfs"), "--restore-detached", "--restore-sibling",
             "--pidfile", str(pid_file), "--manage-cgroups=soft", "--tcp-established", "--evasive-devices",
             *(f"--ext-mount-map={b}" for b in binds),
             *(f"--inherit-fd=fd[{fd}]:{name}" for fd, name in enumerate(descriptors) if "pipe:" in name)],
            what="criu restore", log=log, running=running,
        )  # fmt: skip
        self._adopt_container(sid, container, int(pid_file.read_text()), outputs=str(log))
        cgroups.thaw(self._cgroup(sid))

    def _adopt_container(self, sid: str, container: dict[str, Any], pid: int, *, outputs: str) -> None:
        """Write runc's state of container ``sid`` (as saved at its checkpoint) for the init
        ``pid`` that CRIU restored, whose stdout and stderr are ``outputs``."""
        with open(f"/proc/{pid}/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        state = {
            **container,
            "init_process_pid": pid,
            "init_process_start": started,
            "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "namespace_paths": {k: re.sub(r"^/proc/\d+/", f"/proc/{pid}/", v)
                                for k, v in container.get("namespace_paths", {}).items()},  # fmt: skip
            "external_descriptors": ["/dev/null", outputs, outputs],
        }
        (self._root / sid).mkdir(mode=0o711, exist_ok=True)
        _write_json(self._root / sid / "state.json", state)

    def _check_image_parent(self, parent: Path) -> None:
        """Checkpoint images hold a sandbox's memory, and restore must read them from inside
        the sandbox's user namespace: so they sit in a directory that only root and the
        sandboxes' uid range may enter (mode 0710, group `userns_base`)."""
        st = os.stat(parent)
        if st.st_uid != 0 or st.st_mode & 0o007 or (self._owner and st.st_gid != self._owner):
            raise errors.RuntimeDriverError(
                f"{parent} must be owned by root:{self._owner} with mode 0710 to hold checkpoint images"
            )

    def _frozen(self, sandbox_id: str) -> bool:
        return any(
            (d / "freezer.state").exists() and (d / "freezer.state").read_text().strip() == "FROZEN"
            for d in cgroups.cgroup_dirs(self._cgroup(sandbox_id))
        )

    def _criu_binary(self) -> Path:
        criu = self.settings.cache_dir / "criu" / "current" / "criu"
        if not criu.exists():
            raise errors.RuntimeDriverError(f"CRIU is not built at {criu}: run scripts/build-criu")
        return criu

    async def _criu(self, command: str, *args: str, running: str) -> None:
        """Run ``runc <command>`` with our CRIU (see `_criu_run`)."""
        argv = [self._runc, "--root", str(self._root), "--criu", str(self._criu_binary()), command, *args]
        await self._criu_run(argv, what=f"runc {command}", log=self._root / f"{command}-{args[-1]}.log", running=running)

    async def _criu_run(self, argv: list[str], *, what: str, log: Path, running: str) -> None:
        """Run a command that runs CRIU, its output to ``log`` (a restored tree inherits it,
        and may hold a pipe open for ever); ``running`` names the crash point reached while it
        runs (a command that outlives a killed daemon goes on to the end, `_await_strays`)."""
        try:
            with open(log, "wb") as out:
                pid = _utils.spawn(argv, fds={1: out.fileno(), 2: out.fileno()})
                faults.crash_point(running)
                code = await _utils.finish(pid, argv, self.settings.criu_timeout)
            text = log.read_text(errors="replace")
        finally:
            # CRIU's helpers end up orphaned, and so ours as subreaper: reap them at once
            # (never the CRIU of a concurrent operation: its waiter owns that one).
            _utils.reap_orphans_now(named="criu")
            log.unlink(missing_ok=True)
        if code != 0:
            work = next((a for a in argv if a.endswith("criu-work")), None)
            detail = _criu_errors(Path(work)) if work else ""
            raise errors.RuntimeDriverError(f"{what} failed: {text.strip()[-600:]}{detail}")

    def _save(self, sbx: _Sandbox, *, durable: bool = False) -> None:
        _write_json(self._sandboxes_dir / sbx.spec.sandbox_id / "state.json", sbx.to_json(), durable=durable)

    async def _runc_cmd(self, *args: str) -> str:
        return await _utils.run(self._runc, "--root", self._root, *args)

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

    async def _teardown(self, sandbox_id: str, sbx: _Sandbox | None) -> None:
        """Remove every piece of a sandbox that exists, in reverse order of creation.

        Each step runs even when an earlier one failed; the failures are raised together at
        the end, and the state directory stays until every step succeeded, so that a later
        destroy or reconcile can finish the job.
        """
        sdir = self._sandboxes_dir / sandbox_id
        link = sbx.link if sbx else None
        if link is None and sdir.exists():
            try:
                link = _Sandbox.from_json(json.loads((sdir / "state.json").read_text())).link
            except (OSError, ValueError, KeyError, TypeError):
                pass
        problems: list[str] = []

        async def step(what: str, coro: Any) -> None:
            try:
                await coro
            except Exception as exc:  # noqa: BLE001 - collected and raised below
                problems.append(f"{what}: {exc}")

        reaped = False
        if sbx is not None:
            await _close_client(sbx)
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

    async def _kill_init(self, sbx: _Sandbox) -> bool:
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

    # -- reconciliation ----------------------------------------------------------------

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
                    for c in d.iterdir() if c.is_dir()}  # fmt: skip
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
            if sbx.checkpoint is None and not _alive(sbx.init_pid, None):
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
            if sbx.init_pid and sbx.init_pid not in self._reapers and _alive(sbx.init_pid, None):
                self._watch(sbx)
        return models.ReconcileReport(
            kept=tuple(kept), removed=tuple(removed), missing=tuple(sorted(known - set(kept)))
        )

    async def _recover(self, sbx: _Sandbox, container: dict[str, Any] | None) -> None:
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
                fcntl.ioctl(fd, _FITHAW, 0)
                logger.warning("runc.recover %s: thawed its filesystem", sid)
            finally:
                os.close(fd)
        if self._frozen(sid) and not sbx.paused:
            logger.warning("runc.recover %s: thawing it", sid)
            await self._runc_cmd("resume", sid)
        await self._wire(sbx)

    def _restored_directly(self, sbx: _Sandbox) -> int:
        """The init of a sandbox that a `criu restore` of a killed daemon restored (it has no
        runc container yet: given one here), or 0."""
        sid = sbx.spec.sandbox_id
        sdir = self._sandboxes_dir / sid
        container = _read_container(sdir)
        try:
            pid = int((sdir / "init.pid").read_text())
            with open(f"/proc/{pid}/cgroup") as f:
                ours = any(line.rstrip("\n").endswith(f":{self._cgroup(sid)}") for line in f)
        except (OSError, ValueError):
            return 0
        if container is None or not ours:
            return 0
        self._adopt_container(sid, container, pid, outputs="/dev/null")
        return pid

    async def _await_strays(self, timeout: float = 30.0) -> None:
        """Wait for the runc commands of this instance that outlived the daemon that started
        them: a `runc checkpoint` or `restore`, or a `criu restore` (`_restore_directly`), goes
        on to the end after its caller is killed, and until it is done the container it works
        on cannot be judged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while strays := (_utils.running_with(b"--root", os.fsencode(self._root))
                         | _utils.running_with(b"--config", os.fsencode(self._criu_config))):  # fmt: skip
            if loop.time() > deadline:
                logger.warning("runc.reconcile runc processes %s are still running after %.0f s",
                               sorted(strays), timeout)  # fmt: skip
                return
            await asyncio.sleep(0.02)


_FIFREEZE = 0xC0045877
_FITHAW = 0xC0045878


@contextlib.contextmanager
def _frozen_filesystem(mountpoint: Path) -> Iterator[None]:
    """Flush and freeze a mounted filesystem, so that its image file is consistent."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, _FIFREEZE, 0)
        try:
            yield
        finally:
            fcntl.ioctl(fd, _FITHAW, 0)
    finally:
        os.close(fd)


def _copy_sparse(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest``, leaving its holes holes: a 2 GiB disk image with 50 MiB
    written costs 50 MiB to copy."""
    with open(source, "rb") as src, open(dest, "xb", opener=lambda p, f: os.open(p, f, 0o600)) as dst:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                data = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(src.fileno(), data, os.SEEK_HOLE)
            copied = data
            while copied < hole:
                n = os.copy_file_range(src.fileno(), dst.fileno(), hole - copied, copied, copied)
                if n == 0:
                    break
                copied += n
            offset = hole
        dst.truncate(size)


def _keep_kerndat_tmpfs(criu_dir: Path) -> None:
    """Keep a small tmpfs mounted on ``<criu_dir>/run``, where our CRIU build keeps its
    kerndat cache (scripts/build-criu: RUNDIR), so that dumps and restores skip probing the
    kernel (a raw restore went from ~85 to ~58 ms here). CRIU writes the cache only on a
    tmpfs, which cannot outlive a boot (the kernel may change); /run is not one on every
    host. Mounted once per boot and shared by every driver of the host, like the rest of the
    cache: it is never unmounted."""
    run = criu_dir / "run"
    if not criu_dir.is_dir():
        return  # no CRIU built: nothing to cache for
    run.mkdir(mode=0o700, exist_ok=True)
    with open(criu_dir / ".run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.ismount(run):
            mounts.mount("tmpfs", run, "tmpfs", flags=mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC,
                         options="size=1m,mode=0700")  # fmt: skip


def _read_container(sdir: Path) -> dict[str, Any] | None:
    """runc's state of the sandbox's container as `_release` kept it, if it did."""
    try:
        container = json.loads((sdir / _CONTAINER).read_text())
    except (OSError, ValueError):
        return None
    return container if isinstance(container, dict) and "config" in container else None


def _write_criu_config(path: Path, yard: Path) -> None:
    """Write the CRIU options runc has no flag for; each bundle names the file in its
    ``org.criu.config`` annotation, and runc hands it to CRIU, whose file overrides runc:

    - ``network-lock skip``: CRIU's own lock (nftables rules made in the sandbox's network
      namespace and removed again, ~6 ms of each dump and restore) guards nothing here, as
      the driver deletes the veth before a dump and wires a new one only once the restore
      is done: no packet reaches a socket that is frozen or half-restored. The dump records
      the method, and the restore of that dump follows it.
    - ``cgroup-yard``: the host's own hierarchies (`cgroups.criu_yard`) instead of fresh
      mounts of each one at every dump and restore.
    - ``verbosity=2``, CRIU's default (errors and warnings, what `_criu_errors` reports),
      instead of runc's 4: writing ~1,400 lines of debug log took ~8 ms of every restore.
    """
    cgroups.criu_yard(yard)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"network-lock skip\ncgroup-yard {yard}\nverbosity=2\n")
    os.replace(tmp, path)


def _criu_errors(work: Path) -> str:
    """The error lines of CRIU's own log, which say why much better than runc does."""
    lines: list[str] = []
    for log in sorted(work.glob("*.log")):
        lines += [line for line in log.read_text(errors="replace").splitlines() if "Error" in line]
    return ("\nCRIU: " + "\nCRIU: ".join(lines[-8:])) if lines else ""


def _become_subreaper() -> None:
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise errors.RuntimeDriverError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def _check_traversable(path: Path) -> None:
    for d in (path, *path.parents):
        if not os.stat(d).st_mode & 0o001:
            raise errors.RuntimeDriverError(
                f"{d} must be searchable by others (chmod o+x) for user-namespaced sandboxes "
                f"to reach their root filesystem under {path}"
            )


def _alive(pid: int, reaper: asyncio.Task[int] | None) -> bool:
    if reaper is not None:
        return not reaper.done()
    if pid <= 0:
        return False  # a checkpointed sandbox has no init (and kill(0) means our group)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"


async def _wait_init_quiet(init_pid: int, timeout: float = 1.0) -> None:
    """Wait (at most ``timeout``) until no connection to init's port is open in the sandbox's
    network namespace, as /proc/<init>/net/tcp shows it (ESTABLISHED or CLOSE_WAIT)."""
    port = f":{oci.INIT_PORT:04X}"
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            with open(f"/proc/{init_pid}/net/tcp") as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            return
        if not any(r[1].endswith(port) and r[3] in ("01", "08") for r in rows if len(r) > 3):
            return
        if asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(0.005)


async def _close_client(sbx: _Sandbox) -> None:
    if sbx.client is not None:
        client, sbx.client = sbx.client, None
        await client.aclose()


async def _read_byte(fd: int) -> bytes:
    await _utils.readable(fd)
    return os.read(fd, 1)


def _write_json(path: Path, data: Any, *, durable: bool = False) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one; with
    ``durable``, the new one survives a power cut too (fsynced, and its directory)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", opener=lambda p, f: os.open(p, f, 0o600)) as f:
        json.dump(data, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        images.fsync_dir(path.parent)


@functools.lru_cache(maxsize=64)
def _template_meta(lower: str) -> dict[str, Any]:
    """The ``template.json`` of the build whose rootfs is ``lower`` (builds never change)."""
    return json.loads((Path(lower).parent / "template.json").read_text())  # type: ignore[no-any-return]


def _mirror(source: Path, dest: Path) -> None:
    """Copy the tree ``source`` into the existing directory ``dest`` with the same modes and
    owners (template files are owned by the sandbox's uid range already)."""
    st = os.lstat(source)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, stat.S_IMODE(st.st_mode))
    with os.scandir(source) as entries:
        for entry in entries:
            target = dest / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir():
                target.mkdir()
                _mirror(Path(entry.path), target)
                continue
            elif entry.is_file():
                shutil.copyfile(entry.path, target)
            else:
                continue  # no devices, fifos or sockets in a home directory
            st = entry.stat(follow_symlinks=False)
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            if not entry.is_symlink():
                os.chmod(target, stat.S_IMODE(st.st_mode))


def _write_tree(root: Path, files: Mapping[str, bytes], uid: int, gid: int) -> None:
    """Create ``files`` under ``root``, which nothing else writes to now, owned by uid:gid."""
    for name, data in files.items():
        path = root
        for part in name.split("/")[:-1]:
            path = path / part
            if not path.is_dir():
                path.mkdir(mode=0o755)
                os.chown(path, uid, gid)
        path = path / name.rsplit("/", 1)[-1]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchown(fd, uid, gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


_CLONE_NEWIPC = 0x08000000
_IPC_RMID = 0


def _clear_ipc(init_pid: int) -> None:
    """Remove every System V IPC object and POSIX message queue of init's IPC namespace.

    They outlive the processes that made them, so a run could leave one for the next. This
    thread joins the namespace (``/proc/sysvipc`` and the ``*ctl`` calls see the calling
    thread's), removes what it lists, and goes back; message queues are unlinked through the
    sandbox's own ``/dev/mqueue``.
    """
    own = os.open("/proc/thread-self/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    theirs = os.open(f"/proc/{init_pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(theirs, _CLONE_NEWIPC) != 0:
            raise OSError(ctypes.get_errno(), f"setns into the IPC namespace of {init_pid}")
        try:
            removers = {
                "shm": lambda i: _libc.shmctl(i, _IPC_RMID, None),
                "sem": lambda i: _libc.semctl(i, 0, _IPC_RMID),
                "msg": lambda i: _libc.msgctl(i, _IPC_RMID, None),
            }
            for kind, remove in removers.items():
                with open(f"/proc/sysvipc/{kind}") as f:
                    for line in f.readlines()[1:]:
                        if line.strip():
                            remove(int(line.split()[1]))
        finally:
            if _libc.setns(own, _CLONE_NEWIPC) != 0:
                raise OSError(ctypes.get_errno(), "setns back into the daemon's IPC namespace")
    finally:
        os.close(own)
        os.close(theirs)
    queues = os.open(f"/proc/{init_pid}/root/dev/mqueue", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(queues):
            os.unlink(name, dir_fd=queues)
    finally:
        os.close(queues)


async def _in_own_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in a thread of its own that ends with it, so that a thread whose namespaces
    ``fn`` changed can never be handed other work (as a pool's thread could)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if not done.done():
            done.set_exception(exc) if exc is not None else done.set_result(result)

    def target() -> None:
        try:
            result, exc = fn(*args), None
        except BaseException as caught:  # noqa: BLE001 - handed to the awaiting task
            result, exc = None, caught
        loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=target, name="sandlot-ns", daemon=True).start()
    return await done


def _write_etc(upper: Path, sbx: _Sandbox, owner: int) -> None:
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf into the fresh upper layer.

    They go into the upper directory before the overlay is mounted and before any sandbox
    process exists, so no path here can have been planted by sandbox code.
    """
    etc = upper / "etc"
    etc.mkdir(mode=0o755)
    os.chown(etc, owner, owner)
    hostname = sbx.spec.hostname or sbx.spec.sandbox_id
    files = {
        "hostname": f"{hostname}\n",
        "hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "resolv.conf": "".join(f"nameserver {ns}\n" for ns in network.nameservers()),
    }
    for name, text in files.items():
        path = etc / name
        path.write_text(text)
        os.chown(path, owner, owner)
        os.chmod(path, 0o644)
