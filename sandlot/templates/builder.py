"""Build template root filesystems: debootstrap, apt, a user, the spec's commands, a uid shift.

On-disk layout (the runc driver reads it; keep it exactly)::

    templates_dir/NAME/DIGEST/rootfs/         the root filesystem, owners shifted by userns_base
    templates_dir/NAME/DIGEST/template.json   name, digest, built_at, spec, env, user, workdir, ...
    templates_dir/NAME/DIGEST/build.log       everything the build's commands printed
    templates_dir/NAME/current -> DIGEST      switched atomically, only after a complete build
    templates_dir/NAME/.build-XXXX/           a build in progress, or one that failed
    templates_dir/NAME/.lock                  flock'ed while a build runs

A build happens in ``.build-XXXX`` and is renamed to ``DIGEST`` when complete, so a ``DIGEST``
directory with a ``template.json`` is always a finished template and an interrupted build leaves
only its ``.build-XXXX``, which the next build of that template removes (under the lock, so two
builds never delete each other's work).

Why each command that runs inside the rootfs gets its own mount and pid namespace
(``unshare --mount --pid --fork``): apt's maintainer scripts want ``/proc`` and ``/dev/pts``.
Mounted from the builder's own namespace, those mounts outlive a builder killed by SIGKILL or OOM,
and a later ``rm -rf`` of the build dir would walk into the host's ``/dev/pts``. Mounted in a
private namespace they vanish with the command, whatever happens to us, and a daemon a
package starts dies with the namespace's pid 1 instead of holding the build dir open. The
builder still checks, in a ``finally``, that nothing is mounted under the build dir, and
unmounts (lazily if busy) whatever a crashed build left there before removing it.

Why the owners are shifted at build time: a sandbox runs in a user namespace whose uids
0..65535 are host uids ``userns_base``..``userns_base+65535``. Files owned by host root would look
like ``nobody`` inside, and root in the sandbox could not write its own ``/etc``. ``chown`` clears
setuid/setgid bits, which the shift puts back, and the ``security.capability`` xattr, which it
leaves cleared: a sandbox holds no CAP_NET_RAW, and a file capability outside the bounding set
makes exec fail with EPERM, so ``ping`` works only without its ``cap_net_raw`` (it falls back to
ICMP datagram sockets, see `sandlot.runtime.oci`). Shifting once per template is cheaper than
idmapped mounts per sandbox and works on every kernel and filesystem the cache may live on.

It is longer than the ~600 lines a module aims for because it is one pipeline whose steps
must run in this order under one lock (debootstrap, apt, user, commands, shift, switch of
``current``), with the cleanup every step relies on when a later one fails.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sandlot.config import RuntimeSettings
from sandlot.templates import spec as specs
from sandlot.templates.spec import CommandError, TemplateError, TemplateSpec

__all__ = [
    "STEPS",
    "CommandError",
    "TemplateError",
    "TemplateInfo",
    "build",
    "list_templates",
    "mounts_under",
    "ownership_shift",
    "read_metadata",
    "resolve",
    "shift_ownership",
    "target",
]

logger = logging.getLogger("sandlot.templates.builder")

STEPS = ("debootstrap", "packages", "user", "commands", "cleanup", "shift")
"""The build's steps, in order, as passed to the ``progress`` callback."""

DEBIAN_MIRROR = "http://deb.debian.org/debian"
USER_UID = 1000
USER_GID = 1000
ID_RANGE = 65536
"""How many uids a sandbox's user namespace maps: files must be owned by 0..65535 to be shifted."""

SUDOERS_FILE = "/etc/sudoers.d/90-sandlot-user"
_CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CAPABILITY_XATTR = "security.capability"
_TAIL_LINES = 40
_DEBOOTSTRAP_ATTEMPTS = 2

Progress = Callable[[str, float], None]


@dataclasses.dataclass(frozen=True)
class TemplateInfo:
    """What `list_templates` knows about one template.

    Attributes:
        name: the template's name.
        digest: the digest ``current`` points at, None if never built.
        spec_digest: the digest its spec would build now, None if it has no (valid) spec.
        up_to_date: built, and the build matches the spec (or there is no spec to compare).
        built_at: when ``current`` was built.
        size_bytes: disk usage of ``current``'s rootfs.
        path: the ``DIGEST`` directory of ``current``.
        spec_error: why the spec could not be loaded, if it could not.
    """

    name: str
    digest: str | None
    spec_digest: str | None
    up_to_date: bool
    built_at: datetime | None
    size_bytes: int | None
    path: Path | None
    spec_error: str | None = None


def ownership_shift(settings: RuntimeSettings) -> int:
    """The uid/gid offset template files are owned with: ``userns_base``, or 0 without a userns."""
    return settings.userns_base if settings.userns else 0


def target(spec: TemplateSpec, settings: RuntimeSettings) -> Path:
    """The ``DIGEST`` directory `build` puts this spec's template in."""
    return settings.templates_dir / spec.name / spec.digest(ownership_shift(settings))


def build(
    spec: TemplateSpec,
    settings: RuntimeSettings,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Build `spec` into ``templates_dir/NAME/DIGEST`` and point ``NAME/current`` at it.

    Returns at once when that digest is already built, unless `force`.

    Args:
        force: rebuild even if the digest is already built; the new build replaces the old one
            atomically (sandboxes already running on the old files keep what they have open).
        progress: called as ``progress(step, fraction)`` with a step from `STEPS` and a
            fraction in 0..1, from this thread.

    Raises:
        CommandError: a command failed; its output's tail is attached. ``.build-XXXX/build.log``
            has all of it until the next build removes the directory.
        TemplateError: anything else that stops the build, with what to do about it.

    Example:
        >>> path = build(specs.load("base"), Settings.from_env().runtime)  # doctest: +SKIP
        >>> (path / "rootfs" / "usr/bin/python3").exists()  # doctest: +SKIP
        True
    """
    shift = ownership_shift(settings)
    digest = spec.digest(shift)
    home = settings.templates_dir / spec.name
    final = home / digest
    if not force and _is_built(final):
        with _locked(home, blocking=False) as locked:
            if locked:
                _remove_leftovers(home)
            _point_current(home, digest)
        logger.debug("template.build.cached %s %s", spec.name, digest)
        return final

    _check_host()
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home, blocking=True):
        if not force and _is_built(final):  # another process built it while we waited
            _point_current(home, digest)
            return final
        _remove_leftovers(home)
        work = home / f".build-{secrets.token_hex(4)}"
        work.mkdir(mode=0o755)
        logger.info("template.build.started %s %s in %s", spec.name, digest, work)
        try:
            size = _Build(spec, work, shift, progress or _no_progress).run()
        except BaseException:
            logger.info("template.build.failed %s %s; its files are in %s", spec.name, digest, work)
            raise
        metadata = {
            "name": spec.name,
            "digest": digest,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "spec": spec.model_dump(mode="json"),
            "env": spec.env,
            "user": spec.user,
            "uid": 0 if spec.user == "root" else USER_UID,
            "gid": 0 if spec.user == "root" else USER_GID,
            "workdir": spec.workdir,
            "size_bytes": size,
            "userns_base": shift,
            "builder_version": specs.BUILDER_VERSION,
        }
        (work / "template.json").write_text(json.dumps(metadata, indent=2) + "\n")
        _move_into_place(work, final)
        _point_current(home, digest)
        logger.info("template.build.complete %s %s (%d bytes)", spec.name, digest, size)
    return final


def resolve(name: str, settings: RuntimeSettings) -> Path:
    """The ``DIGEST`` directory that ``templates_dir/NAME/current`` points at.

    The path names the digest, not ``current``, so a caller keeps the files it resolved even if
    a rebuild switches ``current`` afterwards.

    Raises:
        TemplateError: the template was never built (or its build was removed).
    """
    if not re.match(specs.NAME_PATTERN, name):
        raise TemplateError(f"{name!r} is not a valid template name")
    home = settings.templates_dir / name
    try:
        digest = os.readlink(home / "current")
    except OSError:
        digest = ""
    path = home / digest
    if not digest or "/" in digest or not _is_built(path):
        raise TemplateError(f"template {name} is not built (run: sandlot template build {name})")
    return path


def read_metadata(path: Path) -> dict[str, object]:
    """The ``template.json`` of a ``DIGEST`` directory."""
    try:
        data = json.loads((path / "template.json").read_text())
    except (OSError, ValueError) as exc:
        raise TemplateError(f"{path}/template.json cannot be read ({exc}); rebuild the template") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{path}/template.json is not a JSON object; rebuild the template")
    return data


def list_templates(settings: RuntimeSettings, search_dirs: Sequence[Path] = ()) -> list[TemplateInfo]:
    """Every template that has a spec or a build, sorted by name."""
    names = set(specs.available(search_dirs))
    if settings.templates_dir.is_dir():
        names.update(
            p.name
            for p in settings.templates_dir.iterdir()
            if p.is_dir() and re.match(specs.NAME_PATTERN, p.name)
        )
    infos = []
    for name in sorted(names):
        spec_digest = spec_error = None
        try:
            spec_digest = specs.load(name, search_dirs).digest(ownership_shift(settings))
        except TemplateError as exc:
            if specs.find(name, search_dirs) is not None:
                spec_error = str(exc)
        digest = built_at = size = path = None
        try:
            path = resolve(name, settings)
            metadata = read_metadata(path)
            digest = path.name
            built_at = datetime.fromisoformat(str(metadata["built_at"]))
            size = int(metadata["size_bytes"])  # type: ignore[call-overload]
        except (TemplateError, KeyError, ValueError, TypeError):
            pass
        up_to_date = digest is not None and (spec_digest is None or spec_digest == digest)
        infos.append(TemplateInfo(name, digest, spec_digest, up_to_date, built_at, size, path, spec_error))
    return infos


# -- the build -------------------------------------------------------------------------------------


def _no_progress(step: str, fraction: float) -> None:
    pass


class _Build:
    """One build of one spec in one work directory; `run` does the steps and returns the size."""

    def __init__(self, spec: TemplateSpec, work: Path, shift: int, progress: Progress) -> None:
        self.spec = spec
        self.work = work
        self.rootfs = work / "rootfs"
        self.shift = shift
        self.progress = progress
        self.log_path = work / "build.log"
        self.log: IO[str] | None = None

    def run(self) -> int:
        with self.log_path.open("a") as self.log:
            try:
                self._debootstrap()
                self._packages()
                self._user()
                self._commands()
                self._cleanup()
            finally:
                _unmount_all(self.work)
        self.progress("shift", 0.0)
        expected = _count_dpkg_files(self.rootfs)
        size = shift_ownership(
            self.rootfs, self.shift, lambda done: self.progress("shift", min(0.99, done / expected))
        )
        self.progress("shift", 1.0)
        return size

    def _debootstrap(self) -> None:
        # debootstrap prints no total; minbase bookworm retrieves, extracts, unpacks and configures
        # about 90 packages, four lines each. The bar stops short of the end until it has finished.
        counted = ("I: Retrieving ", "I: Extracting ", "I: Unpacking ", "I: Configuring ")
        seen = 0

        def on_line(line: str) -> None:
            nonlocal seen
            if line.startswith(counted):
                seen += 1
                self.progress("debootstrap", min(0.99, seen / 360))

        argv = ["debootstrap", "--variant=minbase", self.spec.suite, str(self.rootfs), DEBIAN_MIRROR]
        env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
        # debootstrap does not retry a download that fails; a flaky mirror gets a second chance.
        for attempt in range(_DEBOOTSTRAP_ATTEMPTS):
            seen = 0
            self.progress("debootstrap", 0.0)
            try:
                self._run("debootstrap", argv, " ".join(argv), env=env, on_line=on_line)
                break
            except CommandError:
                if attempt + 1 == _DEBOOTSTRAP_ATTEMPTS:
                    raise
                logger.info("template.debootstrap.retry %s", self.rootfs)
                _unmount_all(self.work)
                shutil.rmtree(self.rootfs, ignore_errors=True)
        self.progress("debootstrap", 1.0)

    def _packages(self) -> None:
        self.progress("packages", 0.0)
        # Services must not start inside the build (invoke-rc.d asks policy-rc.d; 101 = "no").
        self._chroot(
            "packages",
            "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d",
        )
        if not self.spec.packages:
            self.progress("packages", 1.0)
            return
        self._chroot("packages", "apt-get update -q", on_line=lambda line: self.progress("packages", 0.02))
        total = 0
        seen = 0

        def on_line(line: str) -> None:
            nonlocal total, seen
            if match := re.match(r"\d+ upgraded, (\d+) newly installed", line):
                total = 3 * int(match.group(1))  # one "Get:", "Unpacking", "Setting up" each
            elif line.startswith(("Get:", "Unpacking ", "Setting up ")) and total:
                seen += 1
                self.progress("packages", 0.02 + 0.97 * min(1.0, seen / total))

        install = (
            "apt-get install -y -q --no-install-recommends "
            "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
        ) + " ".join(shlex.quote(p) for p in self.spec.packages)
        self._chroot("packages", install, on_line=on_line)
        self.progress("packages", 1.0)

    def _user(self) -> None:
        self.progress("user", 0.0)
        user, workdir = self.spec.user, shlex.quote(self.spec.workdir)
        if user == "root":
            script = f"mkdir -p {workdir}"
        else:
            script = (
                f"getent group {USER_GID} >/dev/null || groupadd --gid {USER_GID} {user}\n"
                f"id -u {user} >/dev/null 2>&1 || useradd --uid {USER_UID} --gid {USER_GID} "
                f"--create-home --home-dir /home/{user} --shell /bin/bash {user}\n"
                f"if [ ! -d {workdir} ]; then mkdir -p {workdir} && chown {USER_UID}:{USER_GID} {workdir}; fi\n"
                "mkdir -p /etc/sudoers.d && chmod 755 /etc/sudoers.d\n"
                f"printf '%s\\n' '{user} ALL=(ALL:ALL) NOPASSWD: ALL' > {SUDOERS_FILE}\n"
                f"chown 0:0 {SUDOERS_FILE} && chmod 0440 {SUDOERS_FILE}\n"
            )
        self._chroot("user", "set -e\n" + script, display="create user " + user)
        self.progress("user", 1.0)

    def _commands(self) -> None:
        self.progress("commands", 0.0)
        for i, command in enumerate(self.spec.run):
            self._chroot("commands", command)
            self.progress("commands", (i + 1) / len(self.spec.run))
        self.progress("commands", 1.0)

    def _cleanup(self) -> None:
        # resolv.conf, hostname and hosts were copied from the build host; a sandbox gets its own
        # (the runtime writes or mounts them), so leave neutral plain files, never symlinks.
        self.progress("cleanup", 0.0)
        script = (
            "set -e\n"
            "apt-get clean\n"
            "rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /root/.cache /root/.npm\n"
            "find /tmp /var/tmp -mindepth 1 -delete\n"
            "rm -f /etc/resolv.conf /etc/hostname /etc/hosts\n"
            "printf '# written by the sandbox runtime when a sandbox starts\\n' > /etc/resolv.conf\n"
            "printf 'sandbox\\n' > /etc/hostname\n"
            "printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n"
            "127.0.1.1\\tsandbox\\n' > /etc/hosts\n"
            "chmod 644 /etc/resolv.conf /etc/hostname /etc/hosts\n"
        )
        self._chroot("cleanup", script, display="clean up")
        self.progress("cleanup", 1.0)

    def _chroot(
        self,
        step: str,
        command: str,
        *,
        display: str | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """Run `command` with ``/bin/sh -c`` as root inside the rootfs, in private namespaces."""
        env = [
            f"PATH={_CHROOT_PATH}",
            "HOME=/root",
            "LANG=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive",
            "DEBCONF_NONINTERACTIVE_SEEN=true",
            "TERM=dumb",
        ]
        mount_then_chroot = (
            'root="$1"; shift; '
            'mount -t proc proc "$root/proc" && '
            'mount --bind /dev/pts "$root/dev/pts" && '
            'exec chroot "$root" "$@"'
        )
        argv = [
            "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--",
            "/bin/sh", "-c", mount_then_chroot, "sh", str(self.rootfs),
            "/usr/bin/env", "-i", *env, "/bin/sh", "-c", command,
        ]
        self._run(step, argv, display or command, env={"PATH": _CHROOT_PATH, "LC_ALL": "C"}, on_line=on_line)

    def _run(
        self,
        step: str,
        argv: list[str],
        display: str,
        *,
        env: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """Run `argv`, logging its output to build.log; raise `CommandError` if it fails."""
        assert self.log is not None
        self.log.write(f"\n$ [{step}] {display}\n")
        self.log.flush()
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        logger.debug("template.%s.started %s", step, display)
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                errors="replace",
                start_new_session=True,  # so that an interrupted build can stop all of it
            )
        except OSError as exc:
            raise TemplateError(f"{step}: cannot run {argv[0]}: {exc}") from exc
        with process:
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    self.log.write(line)
                    tail.append(line.rstrip("\n"))
                    if on_line is not None:
                        on_line(line)
                returncode = process.wait()
            finally:
                if process.poll() is None:
                    _stop(process)
                self.log.flush()
        if returncode != 0:
            logger.debug("template.%s.failed %s: %d", step, display, returncode)
            raise CommandError(step, display, returncode, "\n".join(tail), log_path=self.log_path)
        logger.debug("template.%s.complete %s", step, display)


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop a command and everything it started: SIGTERM first (debootstrap unmounts what it
    mounted on its way out), then SIGKILL for whatever is left after ten seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# -- the ownership shift ---------------------------------------------------------------------------


def shift_ownership(root: Path, shift: int, progress: Callable[[int], None] | None = None) -> int:
    """Add `shift` to the owner and group of every file under `root`; return their disk usage.

    One pass over the tree. Hard-linked files are changed once. Setuid/setgid bits, which
    ``chown`` clears, are put back. File capabilities are removed, whatever the shift: no
    sandbox could use them (see the module docstring). With ``shift=0`` owners and modes stay.

    Args:
        progress: called with the number of files done so far, every 4096 files.

    Raises:
        TemplateError: a file is owned by an id a sandbox cannot map (>= 65536), or something
            is mounted inside `root`.
    """
    seen_inodes: set[int] = set()
    size = 0
    done = 0
    for path, st in _walk(root):
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            if st.st_ino in seen_inodes:
                continue
            seen_inodes.add(st.st_ino)
        size += st.st_blocks * 512
        done += 1
        if progress is not None and done % 4096 == 0:
            progress(done)
        if stat.S_ISREG(st.st_mode):
            _drop_capabilities(path)
        if shift == 0:
            continue
        if st.st_uid >= ID_RANGE or st.st_gid >= ID_RANGE:
            raise TemplateError(
                f"{path} is owned by {st.st_uid}:{st.st_gid}; a sandbox maps only ids 0..{ID_RANGE - 1} "
                "(fix the spec's commands so they do not create such files)"
            )
        os.lchown(path, st.st_uid + shift, st.st_gid + shift)
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode))
    return size


def _drop_capabilities(path: str) -> None:
    try:
        os.removexattr(path, _CAPABILITY_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP):
            raise


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every path under `root` (itself included) with its lstat, never crossing a mount."""
    top = os.lstat(root)
    yield str(root), top
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev != top.st_dev:
                        raise TemplateError(f"{entry.path} is a mount point inside the template rootfs")
                    stack.append(entry.path)
                yield entry.path, st


def _count_dpkg_files(rootfs: Path) -> int:
    """About how many files the rootfs holds (dpkg's file lists), for the shift's progress bar."""
    count = 0
    with contextlib.suppress(OSError):
        for listing in (rootfs / "var/lib/dpkg/info").glob("*.list"):
            with listing.open("rb") as f:
                count += sum(1 for _ in f)
    return max(count, 1)


# -- mounts ----------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = _unescape(line.split()[4])
            if mount_point == prefix or mount_point.startswith(prefix + "/"):
                found.append(mount_point)
    return sorted(found, key=len, reverse=True)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _unmount_all(path: Path) -> None:
    """Unmount everything below `path` (lazily if busy) and check that it worked."""
    for mount_point in mounts_under(path):
        logger.warning("template.unmount %s", mount_point)
        if _libc.umount2(mount_point.encode(), 0) != 0:
            err = ctypes.get_errno()
            if err == errno.EBUSY:
                _libc.umount2(mount_point.encode(), _MNT_DETACH)
    left = mounts_under(path)
    if left:
        raise TemplateError(f"cannot unmount {', '.join(left)}; unmount them by hand")


# -- the template directory ------------------------------------------------------------------------


def _check_host() -> None:
    if os.geteuid() != 0:
        raise TemplateError("building a template needs root (debootstrap, chroot and chown do)")
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":" + _CHROOT_PATH) is None:
            raise TemplateError(f"{tool} is not installed (run: scripts/setup, or apt-get install {tool})")


def _is_built(path: Path) -> bool:
    return (path / "template.json").is_file() and (path / "rootfs").is_dir()


@contextlib.contextmanager
def _locked(home: Path, *, blocking: bool) -> Iterator[bool]:
    """Hold ``home/.lock``; yield False (without waiting) if another build holds it."""
    with open(home / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_leftovers(home: Path) -> None:
    """Remove failed builds, replaced builds and stray temp links. Call with the lock held."""
    for entry in home.iterdir():
        if entry.name.startswith(".current-"):
            entry.unlink(missing_ok=True)
        elif entry.name.startswith(".old-") and _in_use(entry):
            continue
        elif entry.name.startswith((".build-", ".old-")) and entry.is_dir() and not entry.is_symlink():
            logger.info("template.remove %s", entry)
            _unmount_all(entry)
            shutil.rmtree(entry)


def _in_use(path: Path) -> bool:
    """Whether an overlay mount in this namespace uses a directory under `path` (best effort)."""
    needle = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return any(needle in line for line in f)


def _move_into_place(work: Path, final: Path) -> None:
    """Rename `work` to `final`; swap them atomically if `final` exists (a forced rebuild)."""
    if not final.exists():
        os.rename(work, final)
        return
    swapped = _libc.renameat2(_AT_FDCWD, bytes(work), _AT_FDCWD, bytes(final), _RENAME_EXCHANGE) == 0
    old = final.parent / f".old-{secrets.token_hex(4)}"
    if swapped:
        os.rename(work, old)
    else:  # a filesystem without RENAME_EXCHANGE: a moment without `final`
        os.rename(final, old)
        os.rename(work, final)
    if not _in_use(old):
        shutil.rmtree(old)


def _point_current(home: Path, digest: str) -> None:
    """Make ``home/current`` a symlink to `digest`: made under a temp name, then renamed over."""
    link = home / "current"
    with contextlib.suppress(OSError):
        if os.readlink(link) == digest:
            return
    temporary = home / f".current-{secrets.token_hex(4)}"
    os.symlink(digest, temporary)
    os.replace(temporary, link)
