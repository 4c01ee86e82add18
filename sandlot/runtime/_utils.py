"""Running host commands (runc, ip, nft, mkfs) from async code, with one error type and logs."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence

from sandlot.runtime import errors

logger = logging.getLogger("sandlot.runtime")


class CommandError(errors.RuntimeDriverError):
    """A host command exited non-zero; ``stderr`` holds what it said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} {' '.join(argv[1:3])}... failed ({returncode}): {stderr.strip()[-500:]}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


async def run(
    *argv: str | os.PathLike[str],
    input: bytes | None = None,
    pass_fds: Sequence[int] = (),
    check: bool = True,
) -> str:
    """Run ``argv`` to completion and return its stdout; raise `CommandError` when it fails.

    stdin is /dev/null unless ``input`` is given, so no command ever waits on a terminal.
    """
    args = [os.fspath(a) for a in argv]
    name = os.path.basename(args[0])
    started = time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=pass_fds,
        )
    except OSError as exc:
        raise errors.RuntimeDriverError(f"cannot run {name}: {exc}") from exc
    try:
        stdout, stderr = await proc.communicate(input)
    except asyncio.CancelledError:
        # Never leave a half-done host command running behind a cancelled caller.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0 and check:
        logger.debug("%s.failed in %.1f ms: %s", name, elapsed, args)
        raise CommandError(args, proc.returncode or 0, stderr.decode(errors="replace"))
    logger.debug("%s.complete in %.1f ms: %s", name, elapsed, args[1:4])
    return stdout.decode(errors="replace")


async def readable(fd: int) -> None:
    """Wait, without a thread, until ``fd`` can be read (or is at end of file)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def wait_pid(pid: int) -> int:
    """Wait for our child ``pid`` to exit, without a thread, and reap it; return its exit code.

    A pidfd turns the exit into a readable fd the event loop can watch. asyncio's own child
    watcher only waits for the processes asyncio started, so the two never steal each other's
    exit statuses.
    """
    fd = os.pidfd_open(pid)
    try:
        await readable(fd)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


async def spawn_run(argv: Sequence[str], *, fds: dict[int, int]) -> str:
    """Run ``argv`` with ``fds`` (target fd -> our fd) in place, as `run` does; return stdout.

    `asyncio.create_subprocess_exec` can pass fds only under their own numbers; runc's
    ``--preserve-fds`` wants them at 3, 4, ... so this spawns with `os.posix_spawn`, whose
    file actions put each fd where it belongs.
    """
    name = os.path.basename(argv[0])
    started = time.perf_counter()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                   (os.POSIX_SPAWN_DUP2, err_w, 2)]  # fmt: skip
        actions += [(os.POSIX_SPAWN_DUP2, ours, target) for target, ours in fds.items()]
        pid = os.posix_spawnp(argv[0], list(argv), os.environ, file_actions=actions)
    finally:
        for fd in (out_w, err_w, devnull):
            os.close(fd)
    try:
        stdout, stderr, code = await asyncio.gather(_read_all(out_r), _read_all(err_r), wait_pid(pid))
    finally:
        os.close(out_r)
        os.close(err_r)
    elapsed = (time.perf_counter() - started) * 1000
    if code != 0:
        logger.debug("%s.failed in %.1f ms: %s", name, elapsed, argv)
        raise CommandError(argv, code, stderr.decode(errors="replace"))
    logger.debug("%s.complete in %.1f ms: %s", name, elapsed, argv[1:4])
    return stdout.decode(errors="replace")


async def _read_all(fd: int) -> bytes:
    """Read ``fd`` until EOF. (The write end may live on in a daemonised grandchild, such as
    a container's init that inherits runc's stderr; EOF then comes when that one closes it.)"""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await readable(fd)
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _proc_files(name: str, *, owner: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Each live process's pid with the contents of its ``/proc/<pid>/<name>`` (those that
    exit while being read are left out); only processes of host uid ``owner`` if given."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if owner is not None and os.stat(f"/proc/{entry}").st_uid != owner:
                continue
            with open(f"/proc/{entry}/{name}", "rb") as f:
                data = f.read()
        except OSError:
            continue
        yield int(entry), data


def zombie_children(named: str | None = None) -> set[int]:
    """Our children that have exited and wait to be reaped (only those called ``named``)."""
    me = os.getpid()
    found = set()
    for pid, stat in _proc_files("stat"):
        name, fields = stat[stat.index(b"(") + 1 : stat.rindex(b")")], stat.rsplit(b")", 1)[1].split()
        if fields[0] == b"Z" and int(fields[1]) == me and (named is None or name == named.encode()):
            found.add(pid)
    return found


def running_with(*args: bytes) -> set[int]:
    """Processes (other than this one) of our own uid whose command line holds ``args`` one
    after another. Only our uid's: reading a process's ``cmdline`` takes its memory map's
    lock, which a sandbox process can hold for as long as it likes, and what we look for
    (runc, criu) runs as us, never as a sandbox uid."""
    needle = b"\0" + b"\0".join(args) + b"\0"
    me = os.getpid()
    mine = _proc_files("cmdline", owner=os.geteuid())
    return {pid for pid, cmdline in mine if pid != me and needle in b"\0" + cmdline}


def reap(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


async def reap_orphans(interval: float, *, skip: Callable[[], set[int]]) -> None:
    """Reap, forever, the orphans handed to us as subreaper.

    A subreaper inherits every orphaned descendant, not only sandbox inits: a daemonised
    helper of a host command, a process left by a killed debootstrap. Nobody else waits for
    those, so their zombies would pile up. A zombie is reaped once it has stayed one for a
    whole ``interval``: our own subprocesses are waited for the moment they exit (asyncio's
    watcher, or `wait_pid`), so only the unclaimed ones last that long. ``skip`` names pids
    someone is about to wait for.
    """
    seen: set[int] = set()
    while True:
        await asyncio.sleep(interval)
        now = zombie_children()
        reap((now & seen) - skip())
        seen = now
