"""Checkpoint, restore, fork and snapshot: a sandbox's processes dumped by CRIU (through runc,
or CRIU alone for a sandbox's own restore) and brought back, and the CRIU options runc has no
flag for.

A checkpoint holds a sandbox's memory; a fork or a snapshot is a checkpoint taken with the
processes left running, plus a sparse copy of the disk taken while they are frozen. Each
operation is ordered so that a daemon killed at any step leaves something `reconcile` can
finish or undo; ``faults.crash_point`` names those steps for the crash tests.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import fcntl
import json
import os
import secrets
import shlex
import shutil
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandlot.runtime import _utils, cgroups, disk, errors, faults, images, models, mounts, network
from sandlot.runtime.drivers.runc import bundle, core, host, state

__all__ = ["Criu", "keep_kerndat_tmpfs", "write_config"]


_WIRE_SCRIPT = "wire-on-restore"
"""The file name, and so the process name, of `Criu._wire_on_restore`'s action script."""


class Criu(bundle.Bundles):
    """The capabilities of `base.Checkpointing`, `base.Forking` and `base.Snapshotting`."""

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
        await sbx.close_client()
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

        return await self._copies(children, state.Origin.of(parent), fill=fill, image_dir=image_dir, op="fork")

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
            state.write_json(dest / "runtime.json", {**state.Origin.of(sbx).to_json(), "memory": memory})
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
            origin = state.Origin.from_json(meta)
            memory = bool(meta["memory"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise errors.RuntimeDriverError(f"snapshot {source} is not readable: {exc}") from exc
        if not (Path(origin.lower).parent / "template.json").exists():
            raise errors.TemplateNotFound(f"{origin.template} (the build {origin.lower} the snapshot was taken on)")

        async def fill(disks: Sequence[Path]) -> None:
            await asyncio.to_thread(host.copy_sparse, source / "disk.img", disks[0])

        made = await self._copies(
            [spec], origin, fill=fill, image_dir=source / "memory" if memory else None, op="create"
        )
        return made[0]

    def _check_capturable(self, sbx: state.Sandbox, what: str) -> None:
        sid = sbx.spec.sandbox_id
        if sbx.spec.runner:
            raise errors.SandboxStateError(f"sandbox {sid!r} is a runner sandbox: it cannot be {what}")
        if sbx.checkpoint is not None:
            raise errors.SandboxStateError(f"sandbox {sid!r} is already checkpointed")
        if self._info(sbx).state is models.SandboxState.STOPPED:
            raise errors.SandboxStateError(f"sandbox {sid!r} is not running")

    def _check_image_parent(self, parent: Path) -> None:
        """Checkpoint images hold a sandbox's memory, and restore must read them from inside
        the sandbox's user namespace: so they sit in a directory that only root and the
        sandboxes' uid range may enter (mode 0710, group `userns_base`)."""
        st = os.stat(parent)
        if st.st_uid != 0 or st.st_mode & 0o007 or (self._owner and st.st_gid != self._owner):
            raise errors.RuntimeDriverError(
                f"{parent} must be owned by root:{self._owner} with mode 0710 to hold checkpoint images"
            )

    async def _dump(self, sbx: state.Sandbox, image_dir: Path, *, op: str) -> None:
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
            )
            await asyncio.to_thread(images.seal, image_dir, group=self._owner)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, written, True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        faults.crash_point(f"{op}.dumped")

    async def _go_on(self, sbx: state.Sandbox, *, thaw: bool) -> None:
        """Undo a pause that did not commit: the sandbox gets its veth back and runs on."""
        await self._wire(sbx)
        if thaw:
            await self._runc_cmd("resume", sbx.spec.sandbox_id)

    async def _capture(self, sbx: state.Sandbox, *, image_dir: Path | None, disks: Sequence[Path], op: str) -> None:
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
            await sbx.close_client()
            await host.wait_init_quiet(sbx.init_pid)
            await self._runc_cmd("pause", sid)
        try:
            if image_dir is not None:
                faults.crash_point(f"{op}.frozen")
                await self._dump(sbx, image_dir, op=op)
            with host.frozen_filesystem(sdir / "disk"):
                faults.crash_point(f"{op}.disk_frozen")
                for dest in disks:
                    await asyncio.to_thread(host.copy_sparse, sdir / "disk.img", dest)
        finally:
            if image_dir is not None:
                await self._runc_cmd("resume", sid)

    async def _copies(
        self,
        specs: Sequence[models.SandboxSpec],
        origin: state.Origin,
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
            if not core.SANDBOX_ID.match(spec.sandbox_id):
                raise ValueError(f"sandbox id {spec.sandbox_id!r}: use 1-63 of a-z, 0-9 and '-'")
        made: list[state.Sandbox] = []
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

    def _new_copy(self, spec: models.SandboxSpec, origin: state.Origin, *, same_memory: bool) -> state.Sandbox:
        """The state (and directories) of a sandbox about to run on a copy of ``origin``."""
        sdir = self._sandboxes_dir / spec.sandbox_id
        try:
            sdir.mkdir(mode=0o711)
        except FileExistsError:
            raise errors.SandboxExists(spec.sandbox_id) from None
        child = state.Sandbox(
            spec=dataclasses.replace(spec, template=origin.template, hostname=origin.hostname),
            limits=origin.limits,
            link=None,
            lower=origin.lower,
            created_at=datetime.now(UTC),
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

    async def _restore(self, sbx: state.Sandbox, image_dir: Path, *, op: str, check: bool) -> None:
        """Run the sandbox's processes again from ``image_dir`` on its own disk, after checking
        the images unless ``check`` is false (they were sealed by the calling operation)."""
        sid = sbx.spec.sandbox_id
        sdir = self._sandboxes_dir / sid
        assert sbx.link is not None
        criu_work = sdir / "criu-work"
        pid_file = sdir / "init.pid"
        # The images are checked in a thread while the disk is mounted, and before CRIU runs.
        checked = asyncio.ensure_future(asyncio.to_thread(images.check, image_dir)) if check else None
        container = state.read_container(sdir)
        try:
            try:
                disk.mount(sdir / "disk.img", sdir / "disk")
                self._mount_overlay(sbx, sdir)
                if container is None:
                    self._write_config(sbx, sbx.link, sdir, bundle.template_meta(sbx.lower))
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
                )
            sbx.init_pid = int(pid_file.read_text())
            self._watch(sbx)
            await self._wire(sbx)
        except BaseException:
            await asyncio.shield(self._undo_restore(sbx))
            raise
        sbx.paused = False
        shutil.rmtree(criu_work, ignore_errors=True)

    async def _undo_restore(self, sbx: state.Sandbox) -> None:
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
        self,
        sbx: state.Sandbox,
        image_dir: Path,
        container: dict[str, Any],
        work: Path,
        pid_file: Path,
        *,
        running: str,
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
        assert sbx.link is not None
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
             "--action-script", str(self._wire_on_restore(sbx.link, work)),
             *(f"--ext-mount-map={b}" for b in binds),
             *(f"--inherit-fd=fd[{fd}]:{name}" for fd, name in enumerate(descriptors) if "pipe:" in name)],
            what="criu restore", log=log, running=running,
        )
        state.adopt_container(self._root, sid, container, int(pid_file.read_text()), outputs=str(log))
        cgroups.thaw(self._cgroup(sid))

    def _wire_on_restore(self, link: network.Link, work: Path) -> Path:
        """A CRIU action script, written into ``work``, that gives the sandbox its veth and
        address once CRIU has made its network namespace and before it restores sockets: a
        TCP connection to or from outside can only be put back on an address the sandbox has.
        runc does the same for its restores with the bundle's createRuntime hook."""
        hook = shlex.join([str(self._init_binary), *self._hook_args(link)])
        script = work / _WIRE_SCRIPT
        script.write_text(
            "#!/bin/sh\n"
            '[ "$CRTOOLS_SCRIPT_ACTION" = setup-namespaces ] || exit 0\n'
            f'printf \'{{"pid": %d}}\' "$CRTOOLS_INIT_PID" | exec {hook}\n'
        )
        script.chmod(0o700)
        return script

    def _criu_binary(self) -> Path:
        criu = self.settings.cache_dir / "criu" / "current" / "criu"
        if not criu.exists():
            raise errors.RuntimeDriverError(f"CRIU is not built at {criu}: run scripts/build-criu")
        return criu

    async def _criu(self, command: str, *args: str, running: str) -> None:
        """Run ``runc <command>`` with our CRIU (see `_criu_run`)."""
        argv = [self._runc, "--root", str(self._root), "--criu", str(self._criu_binary()), command, *args]
        log = self._root / f"{command}-{args[-1]}.log"
        await self._criu_run(argv, what=f"runc {command}", log=log, running=running)

    async def _criu_run(self, argv: list[str], *, what: str, log: Path, running: str) -> None:
        """Run a command that runs CRIU, its output to ``log`` (a restored tree inherits it,
        and may hold a pipe open for ever); ``running`` names the crash point reached while it
        runs (a command that outlives a killed daemon goes on to the end, `_await_strays`)."""
        try:
            with open(log, "wb") as out:  # noqa: ASYNC230 - a new empty file in our own state directory
                pid = _utils.spawn(argv, fds={1: out.fileno(), 2: out.fileno()})
                faults.crash_point(running)
                code = await _utils.finish(pid, argv, self.settings.criu_timeout)
            text = log.read_text(errors="replace")
        finally:
            # CRIU's helpers, and the action script of a CRIU killed with it, end up orphaned,
            # and so ours as subreaper: reap them at once (never the CRIU of a concurrent
            # operation: its waiter owns that one).
            _utils.reap_orphans_now("criu", _WIRE_SCRIPT)
            log.unlink(missing_ok=True)
        if code != 0:
            work = next((a for a in argv if a.endswith("criu-work")), None)
            detail = _criu_errors(Path(work)) if work else ""
            raise errors.RuntimeDriverError(f"{what} failed: {text.strip()[-600:]}{detail}")


def keep_kerndat_tmpfs(criu_dir: Path) -> None:
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
                         options="size=1m,mode=0700")


def write_config(path: Path, yard: Path) -> None:
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
