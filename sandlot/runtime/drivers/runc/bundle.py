"""Making a sandbox: its template's build, its disk and overlay root, its OCI bundle, and
starting its init with runc.

The root is an overlay: the template's build (read-only, shared) below, the ``upper/`` of the
sandbox's own disk above (a loop-mounted ext4 image, or a tmpfs for a runner sandbox). The
files the sandbox must not be able to plant (``/etc/hosts`` and the like) are written into the
upper layer before the overlay is mounted and before any of its processes exists.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandlot.runtime import _utils, disk, errors, mounts, network, oci
from sandlot.runtime.drivers.runc import core, host, state

__all__ = ["Bundles", "template_meta", "write_tree"]

_DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_READY_TIMEOUT = 10.0


class Bundles(core.Core):
    """Make a sandbox's root filesystem and bundle, and boot it."""

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

    async def _make_rootfs(self, sbx: state.Sandbox, sdir: Path) -> None:
        owner = self._owner
        image, mnt = sdir / "disk.img", sdir / "disk"
        for d in (mnt, sdir / "bundle" / "rootfs"):
            d.mkdir(parents=True)
        if sbx.spec.runner:
            # No disk image: the scratch tmpfs is the disk, and `reset` empties it.
            mb = sbx.limits.disk_mb
            mounts.mount("tmpfs", mnt, "tmpfs", flags=mounts.MS_NOSUID | mounts.MS_NODEV,
                         options=f"size={mb}m,nr_inodes={mb * 64},mode=0711,uid={owner},gid={owner}")
            await asyncio.to_thread(self._fill_scratch, sbx, mnt)
        else:
            await self._disks.take(image, size_mb=sbx.limits.disk_mb)
            disk.mount(image, mnt)
        for d in (mnt / "upper", mnt / "work"):
            d.mkdir()
            os.chown(d, owner, owner)
        _write_etc(mnt / "upper", sbx, owner)
        self._mount_overlay(sbx, sdir)

    def _mount_overlay(self, sbx: state.Sandbox, sdir: Path) -> None:
        """The sandbox's root: its template build below, the upper layer of its disk above.
        ``nodev``: a device node in the template or made by the sandbox opens nothing."""
        upper, work = sdir / "disk" / "upper", sdir / "disk" / "work"
        mounts.mount("overlay", sdir / "bundle" / "rootfs", "overlay", flags=mounts.MS_NODEV,
                     options=f"lowerdir={sbx.lower},upperdir={upper},workdir={work}")

    def _fill_scratch(self, sbx: state.Sandbox, scratch: Path) -> None:
        """Make (or, after a run, make again) a runner sandbox's writable places as new: empty
        ``tmp``, ``var-tmp`` and ``shm``, and a ``home`` holding only what the template's
        working directory holds. Nothing in the sandbox runs while this happens, so no path
        here can change under it; entries are removed without following links."""
        workdir = template_meta(sbx.lower).get("workdir", "/home/user")
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
        self, sbx: state.Sandbox, link: network.Link, sdir: Path, template: dict[str, Any], *, hook: bool = True
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
        state.write_json(sdir / "bundle" / "config.json", config)

    async def _run(self, sbx: state.Sandbox, link: network.Link, sdir: Path, template: dict[str, Any]) -> None:
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
            )
            os.close(ready_w)
            ready_w = -1
            sbx.init_pid = int(pid_file.read_text())
            self._watch(sbx)
            if await asyncio.wait_for(host.read_byte(ready_r), _READY_TIMEOUT) != b"1":
                raise errors.RuntimeDriverError(f"sandbox {sid!r}: init exited before it was ready")
        finally:
            for fd in (token_r, token_w, ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)

    async def _boot(self, sbx: state.Sandbox, template: dict[str, Any]) -> None:
        """Start a sandbox whose disk holds its files already: a fresh init, no old process."""
        sdir = self._sandboxes_dir / sbx.spec.sandbox_id
        assert sbx.link is not None
        disk.mount(sdir / "disk.img", sdir / "disk")
        self._mount_overlay(sbx, sdir)
        (sdir / "init.pid").unlink(missing_ok=True)
        await self._run(sbx, sbx.link, sdir, template)


@functools.lru_cache(maxsize=64)
def template_meta(lower: str) -> dict[str, Any]:
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


def write_tree(root: Path, files: Mapping[str, bytes], uid: int, gid: int) -> None:
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


def _write_etc(upper: Path, sbx: state.Sandbox, owner: int) -> None:
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
