"""`FakeDriver`: sandboxes as records in a dict; see the package for what it is (not) for."""

from __future__ import annotations

import builtins
import dataclasses
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from sandlot.config import RuntimeSettings
from sandlot.runtime import base, errors, models
from sandlot.runtime.drivers.fake import processes

__all__ = ["FakeDriver"]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TEMPLATE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MEMORY_BYTES = 16 << 20
"""What `stats` says a sandbox uses, whatever runs in it."""
_OPERATIONS = frozenset({
    "create", "start", "attach", "processes", "pause", "resume", "stats", "update", "reset",
    "put_files", "destroy", "reconcile", "checkpoint", "restore", "fork", "snapshot",
    "create_from_snapshot", "restart",
})
"""What `FakeDriver.fail_next` can make fail."""


@dataclasses.dataclass
class _Sandbox:
    spec: models.SandboxSpec
    made: models.SandboxInfo
    """What `info` says of it but for its state, init and checkpoint (and limits and network
    policy as `FakeDriver.update` sets them)."""
    init_pid: int = 0
    """0 when nothing of it runs: checkpointed, or its init is gone (`FakeDriver.kill_init`)."""
    paused: bool = False
    """Frozen, as by the cgroup freezer (`FakeDriver.pause`)."""
    checkpoint: Path | None = None
    processes: processes.Table = dataclasses.field(default_factory=processes.Table)

    def info(self) -> models.SandboxInfo:
        return dataclasses.replace(self.made, state=self.state, init_pid=self.init_pid, checkpoint=self.checkpoint)

    @property
    def state(self) -> models.SandboxState:
        if self.checkpoint is not None or (self.init_pid and self.paused):
            return models.SandboxState.PAUSED
        return models.SandboxState.RUNNING if self.init_pid else models.SandboxState.STOPPED

    def end_processes(self) -> None:
        """Every process ends before its streams see it exit (a checkpoint, a kill)."""
        self.processes.end(None)
        self.processes = processes.Table()


@dataclasses.dataclass(frozen=True)
class _Origin:
    """What a copy of a sandbox (a fork, a sandbox made from a snapshot) takes from it."""

    template: str
    limits: models.Limits
    hostname: str


class FakeDriver:
    """`RuntimeDriver` with every capability (`Checkpointing`, `Forking`, `Snapshotting`,
    `Restarting`), in memory; see the package for what it is (not) for.

    A template exists when ``<templates_dir>/<name>/current`` does (as for `RuncDriver`, and
    as the manager checks), limits are clamped to ``max_limits``, addresses come from
    ``subnet``, and files go under ``data_dir``: nothing else of ``settings`` is used.
    """

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._dir = settings.data_dir / "fake-sandboxes"
        self._sandboxes: dict[str, _Sandbox] = {}
        self._slots = itertools.count(0)
        self._init_pids = itertools.count(1000)
        self._faults: dict[str, errors.RuntimeDriverError] = {}

    async def open(self) -> Self:
        self._dir.mkdir(parents=True, exist_ok=True)
        return self

    async def aclose(self) -> None:
        for sbx in self._sandboxes.values():
            sbx.processes.cut()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- test hooks --------------------------------------------------------------------

    def fail_next(self, operation: str, error: errors.RuntimeDriverError | None = None) -> None:
        """Make the next call of ``operation`` (a method's name: ``"restore"``) raise
        ``error``, a `RuntimeDriverError` by default, before it changes anything."""
        if operation not in _OPERATIONS:
            raise ValueError(f"{operation!r} is not an operation of the driver")
        self._faults[operation] = error or errors.RuntimeDriverError(f"{operation} failed (FakeDriver.fail_next)")

    def _fault(self, operation: str) -> None:
        error = self._faults.pop(operation, None)
        if error is not None:
            raise error

    def kill_init(self, sandbox_id: str) -> None:
        """End the sandbox's init, as if it died: every process ends, and the sandbox is
        STOPPED (only destroy is left; `reconcile` reports it missing)."""
        sbx = self._get(sandbox_id)
        sbx.end_processes()
        sbx.init_pid, sbx.paused = 0, False

    # -- sandboxes ---------------------------------------------------------------------

    async def create(self, *, spec: models.SandboxSpec) -> models.SandboxInfo:
        self._fault("create")
        self._check_new(spec.sandbox_id)
        self._template(spec.template)
        sbx = self._new(spec, spec.limits.clamp(self.settings.max_limits))
        (self._root(sbx) / "home" / "user").mkdir(parents=True)
        return sbx.info()

    def _check_new(self, sandbox_id: str) -> None:
        if not _ID.match(sandbox_id):
            raise ValueError(f"sandbox id {sandbox_id!r}: use 1-63 of a-z, 0-9 and '-', not starting with '-'")
        if sandbox_id in self._sandboxes or (self._dir / sandbox_id).exists():
            raise errors.SandboxExists(sandbox_id)

    def _template(self, name: str) -> None:
        if not _TEMPLATE.match(name) or not (self.settings.templates_dir / name / "current").is_dir():
            raise errors.TemplateNotFound(name)

    def _new(self, spec: models.SandboxSpec, limits: models.Limits) -> _Sandbox:
        """A running sandbox of ``spec``, its directory made (its root filesystem not)."""
        address = ipaddress.ip_network(self.settings.subnet).network_address + 4 * next(self._slots) + 2
        made = models.SandboxInfo(
            sandbox_id=spec.sandbox_id, state=models.SandboxState.RUNNING, template=spec.template,
            created_at=datetime.now(UTC), limits=limits, network=spec.network, metadata=spec.metadata,
            address=str(address), init_pid=0,
        )
        sbx = _Sandbox(spec=spec, made=made, init_pid=next(self._init_pids))
        (self._dir / spec.sandbox_id).mkdir(parents=True)
        self._sandboxes[spec.sandbox_id] = sbx
        return sbx

    def _root(self, sbx: _Sandbox) -> Path:
        return self._dir / sbx.spec.sandbox_id / "rootfs"

    def _get(self, sandbox_id: str) -> _Sandbox:
        sbx = self._sandboxes.get(sandbox_id)
        if sbx is None:
            raise errors.SandboxNotFound(sandbox_id)
        return sbx

    async def info(self, *, sandbox_id: str) -> models.SandboxInfo:
        return self._get(sandbox_id).info()

    async def list(self) -> builtins.list[models.SandboxInfo]:
        return [s.info() for s in self._sandboxes.values()]

    # -- processes ---------------------------------------------------------------------

    def _running(self, sandbox_id: str) -> _Sandbox:
        sbx = self._get(sandbox_id)
        if sbx.state is not models.SandboxState.RUNNING:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is {sbx.state.value}")
        return sbx

    async def start(self, *, sandbox_id: str, process: models.ProcessSpec) -> base.Process:
        self._fault("start")
        return self._running(sandbox_id).processes.start(process)

    async def attach(self, *, sandbox_id: str, pid: int) -> base.Process:
        self._fault("attach")
        return self._running(sandbox_id).processes.attach(pid)

    async def processes(self, *, sandbox_id: str) -> builtins.list[models.ProcessInfo]:
        self._fault("processes")
        return [p.info() for p in self._running(sandbox_id).processes.running()]

    # -- runner sandboxes, limits, stats -------------------------------------------------

    def _runner(self, sandbox_id: str) -> _Sandbox:
        sbx = self._running(sandbox_id)
        if not sbx.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not a runner sandbox")
        return sbx

    async def reset(self, *, sandbox_id: str) -> None:
        """Every process killed and the home directory emptied."""
        self._fault("reset")
        sbx = self._runner(sandbox_id)
        sbx.processes.end(models.ExitStatus(exit_code=None, signal=signal.SIGKILL))
        home = self._root(sbx) / "home" / "user"
        shutil.rmtree(home)
        home.mkdir()

    async def put_files(self, *, sandbox_id: str, files: Mapping[str, bytes]) -> None:
        self._fault("put_files")
        sbx = self._runner(sandbox_id)
        if sbx.processes.running():
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is running something: reset it first")
        for name in files:
            if name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in name.split("/")):
                raise ValueError(f"file name {name!r}: use a relative path without '.', '..' or empty parts")
        for name, data in files.items():
            path = self._root(sbx) / "home" / "user" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    async def update(
        self, *, sandbox_id: str, limits: models.Limits | None = None, network: models.NetworkPolicy | None = None
    ) -> None:
        self._fault("update")
        sbx = self._get(sandbox_id)
        if sbx.checkpoint is not None or not sbx.init_pid:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not running")
        if limits is not None:
            limits = limits.clamp(self.settings.max_limits)
            if limits.disk_mb != sbx.made.limits.disk_mb:
                raise ValueError("limits.disk_mb cannot change after a sandbox is made")
            sbx.made = dataclasses.replace(sbx.made, limits=limits)
        if network is not None:
            sbx.made = dataclasses.replace(sbx.made, network=network)

    async def stats(self, *, sandbox_id: str) -> models.Stats:
        """A fixed memory figure; disk is what its files hold."""
        self._fault("stats")
        sbx = self._get(sandbox_id)
        if not sbx.init_pid:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} has no stats: it is not running")
        files = (p for p in self._root(sbx).rglob("*") if p.is_file())
        return models.Stats(
            cpu_usage_ns=0,
            cpu_cores=sbx.made.limits.cpu_cores,
            memory_bytes=_MEMORY_BYTES,
            memory_limit_bytes=sbx.made.limits.memory_mb << 20,
            disk_bytes=sum(p.stat().st_size for p in files),
            disk_limit_bytes=sbx.made.limits.disk_mb << 20,
            pids=1 + len(sbx.processes.running()),
            memory_peak_bytes=_MEMORY_BYTES,
        )

    async def filesystem(self, *, sandbox_id: str) -> models.HostFilesystem:
        """Its root filesystem is a directory of this process's user's (so: ``uid_base``)."""
        return models.HostFilesystem(root=self._root(self._get(sandbox_id)), uid_base=os.geteuid())

    # -- pause, destroy, reconcile -------------------------------------------------------

    async def pause(self, *, sandbox_id: str) -> None:
        self._fault("pause")
        sbx = self._get(sandbox_id)
        if sbx.paused or sbx.checkpoint is not None:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is already paused")
        if not sbx.init_pid:
            raise errors.RuntimeDriverError(f"runc pause {sandbox_id}: container not running")
        sbx.paused = True

    async def resume(self, *, sandbox_id: str) -> None:
        self._fault("resume")
        sbx = self._get(sandbox_id)
        if not sbx.paused:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not paused")
        sbx.paused = False

    async def destroy(self, *, sandbox_id: str) -> None:
        self._fault("destroy")
        sbx = self._sandboxes.pop(sandbox_id, None)
        if sbx is None and not (self._dir / sandbox_id).exists():
            raise errors.SandboxNotFound(sandbox_id)
        if sbx is not None:
            sbx.end_processes()
        shutil.rmtree(self._dir / sandbox_id, ignore_errors=True)

    async def reconcile(self, *, known: Collection[str]) -> models.ReconcileReport:
        """Remove what is held outside ``known`` (records, and directories of none), and
        known sandboxes whose init is gone (reported missing), as `RuncDriver` does."""
        self._fault("reconcile")
        known = set(known)
        held = set(self._sandboxes) | {p.name for p in (self._dir.iterdir() if self._dir.exists() else ())}
        removed = sorted(held - known)
        lost = sorted(
            s for s in known & set(self._sandboxes) if self._sandboxes[s].state is models.SandboxState.STOPPED
        )
        for sid in (*removed, *lost):
            await self.destroy(sandbox_id=sid)
        kept = sorted(known & set(self._sandboxes))
        return models.ReconcileReport(
            kept=tuple(kept), removed=tuple(removed), missing=tuple(sorted(known - set(kept)))
        )

    # -- checkpoint, restore, fork, snapshots, restart -------------------------------------

    def _capturable(self, sandbox_id: str, what: str, *, frozen: bool = False) -> _Sandbox:
        """A sandbox whose processes can be captured: not a runner's, not checkpointed, its
        init running (and not frozen by `pause`, unless ``frozen``)."""
        sbx = self._get(sandbox_id)
        if sbx.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is a runner sandbox: it cannot be {what}")
        if sbx.checkpoint is not None:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is already checkpointed")
        if not sbx.init_pid or (sbx.paused and not frozen):
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not running")
        return sbx

    async def checkpoint(self, *, sandbox_id: str, image_dir: Path) -> None:
        """The processes written to ``image_dir`` (which must not exist) and ended; a
        sandbox frozen by `pause` can be checkpointed, a checkpointed one not."""
        self._fault("checkpoint")
        sbx = self._capturable(sandbox_id, "checkpointed", frozen=True)
        sbx.processes.dump(image_dir)
        sbx.end_processes()
        sbx.checkpoint, sbx.init_pid, sbx.paused = image_dir, 0, False

    async def restore(self, *, sandbox_id: str) -> models.SandboxInfo:
        """The processes of the checkpoint running again; a damaged or missing one is
        refused and the sandbox stays checkpointed."""
        self._fault("restore")
        sbx = self._get(sandbox_id)
        if sbx.checkpoint is None:
            raise errors.SandboxStateError(f"sandbox {sandbox_id!r} is not checkpointed")
        sbx.processes = processes.Table.load(sbx.checkpoint)
        sbx.checkpoint, sbx.init_pid = None, next(self._init_pids)
        return sbx.info()

    async def fork(
        self, *, sandbox_id: str, children: Sequence[models.SandboxSpec], image_dir: Path
    ) -> builtins.list[models.SandboxInfo]:
        self._fault("fork")
        parent = self._capturable(sandbox_id, "forked")
        parent.processes.dump(image_dir)
        parent.processes.cut()
        origin = _Origin(parent.spec.template, parent.made.limits, parent.spec.hostname or sandbox_id)
        return await self._copies(children, origin, self._root(parent), image_dir)

    async def _copies(
        self, specs: Sequence[models.SandboxSpec], origin: _Origin, files: Path, image_dir: Path | None
    ) -> builtins.list[models.SandboxInfo]:
        """Running copies of ``origin`` as ``specs`` ask, all or none: ``files`` copied, and
        the processes of ``image_dir`` restored when given (else only init runs)."""
        if len({s.sandbox_id for s in specs}) < len(specs):
            raise ValueError("the copies' sandbox ids must differ")
        for spec in specs:
            self._check_new(spec.sandbox_id)
        made: builtins.list[_Sandbox] = []
        try:
            for spec in specs:
                copy = dataclasses.replace(spec, template=origin.template, hostname=origin.hostname)
                made.append(self._new(copy, origin.limits))
                shutil.copytree(files, self._root(made[-1]), symlinks=True)
                if image_dir is not None:
                    made[-1].processes = processes.Table.load(image_dir)
        except BaseException as exc:
            for sbx in made:
                await self.destroy(sandbox_id=sbx.spec.sandbox_id)
            if isinstance(exc, OSError):
                raise errors.RuntimeDriverError(f"copying sandbox {origin.hostname!r} failed: {exc}") from exc
            raise
        return [sbx.info() for sbx in made]

    async def snapshot(self, *, sandbox_id: str, dest: Path, memory: bool = True) -> None:
        """``dest`` holds ``rootfs/`` (its files), ``memory/`` (the image, unless not
        ``memory``) and ``runtime.json`` (what a copy takes: template, limits, hostname)."""
        self._fault("snapshot")
        sbx = self._capturable(sandbox_id, "snapshotted")
        try:
            dest.mkdir(mode=0o700)
        except OSError as exc:
            raise errors.RuntimeDriverError(f"snapshotting sandbox {sandbox_id!r} failed: {exc}") from exc
        origin = {"template": sbx.spec.template, "limits": dataclasses.asdict(sbx.made.limits),
                  "hostname": sbx.spec.hostname or sandbox_id, "memory": memory}
        try:
            shutil.copytree(self._root(sbx), dest / "rootfs", symlinks=True)
            if memory:
                sbx.processes.dump(dest / "memory")
            (dest / "runtime.json").write_text(json.dumps(origin))
        except BaseException as exc:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(exc, OSError):
                raise errors.RuntimeDriverError(f"snapshotting sandbox {sandbox_id!r} failed: {exc}") from exc
            raise
        if memory:
            sbx.processes.cut()

    async def create_from_snapshot(self, *, spec: models.SandboxSpec, source: Path) -> models.SandboxInfo:
        self._fault("create_from_snapshot")
        try:
            meta = json.loads((source / "runtime.json").read_text())
            origin = _Origin(meta["template"], models.Limits(**meta["limits"]), meta["hostname"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise errors.RuntimeDriverError(f"snapshot {source} is not readable: {exc}") from exc
        self._template(origin.template)
        made = await self._copies([spec], origin, source / "rootfs", source / "memory" if meta["memory"] else None)
        return made[0]

    async def restart(self, *, sandbox_id: str) -> models.SandboxInfo:
        """Every process ended (a checkpoint dropped) and a new init on the same files; the
        template must still exist, or nothing is touched."""
        self._fault("restart")
        sbx = self._get(sandbox_id)
        self._template(sbx.spec.template)
        sbx.end_processes()
        sbx.checkpoint, sbx.paused = None, False
        sbx.init_pid = next(self._init_pids)
        return sbx.info()

