"""Running host commands (runc, ip, nft, mkfs, criu) from async code, with one error type,
deadlines and logs, and reaping the orphans a subreaper inherits without stealing anybody's
exit status.

Every child this process starts is spawned here with `os.posix_spawn` and registered in
`_WAITED` in the same step, before any other coroutine can run; its waiter reaps it through a
pidfd (`wait_pid`). The orphan reapers (`reap_orphans`, `reap_orphans_now`) take only zombies
outside that set. One waiter per pid, and nobody else: asyncio's child watchers are never
involved, so a concurrent `waitpid` cannot take a status its owner waits for. (uvloop's
watcher, when another reaper took its child's status, waits for ever.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Collection, Iterator, Mapping, Sequence

from sandlot.runtime import errors

logger = logging.getLogger("sandlot.runtime")

COMMAND_TIMEOUT = 60.0
"""Seconds a host command may run before it is killed (`run`'s default deadline)."""

_WAITED: set[int] = set()
"""Our children that a coroutine of this process waits for: never an orphan to reap."""


class CommandError(errors.RuntimeDriverError):
    """A host command exited non-zero; ``stderr`` holds what it said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} {' '.join(argv[1:3])}... failed ({returncode}): {stderr.strip()[-500:]}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class CommandTimeout(errors.RuntimeDriverError):
    """A host command outlived its deadline and was killed."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"{os.path.basename(argv[0])} {' '.join(argv[1:3])}... took over {timeout:g} s and was killed")
        self.argv = list(argv)
        self.timeout = timeout


async def run(
    *argv: str | os.PathLike[str],
    input: bytes | None = None,
    fds: Mapping[int, int] | None = None,
    output: int | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> str:
    """Run ``argv`` to completion and return its stdout; raise `CommandError` when it fails,
    `CommandTimeout` (once it is killed and reaped) when it runs past ``timeout`` seconds.

    stdin is ``input`` (from a memfd, so nothing has to feed a pipe), else /dev/null, so no
    command ever waits on a terminal. ``fds`` puts our fds at the child's numbers (runc's
    ``--preserve-fds`` wants them at 3, 4, ...). With ``output``, an fd, the command's stdout
    and stderr both go there (a file: a restored tree may hold a pipe open for ever) and ""
    is returned. A cancelled caller never leaves the command running.
    """
    args = [os.fspath(a) for a in argv]
    name = os.path.basename(args[0])
    started = time.perf_counter()
    pipes: tuple[tuple[int, int], tuple[int, int]] | None = None
    if output is None:
        pipes = (os.pipe(), os.pipe())
        out, err = pipes[0][1], pipes[1][1]
    else:
        out = err = output
    stdin = {0: _memfd(input)} if input is not None else {}
    try:
        pid = spawn(args, fds={**stdin, 1: out, 2: err, **(fds or {})})
    finally:
        for fd in [*stdin.values(), *(w for _, w in pipes or ())]:
            os.close(fd)
    # The output is read while the command runs (a full pipe would stop it), and `finish` is
    # awaited here, not in a task, so that a cancelled caller returns only once it is reaped.
    readers = asyncio.gather(*(_read_all(r) for r, _ in pipes or ()))
    try:
        code = await finish(pid, args, timeout)
        stdout, stderr = await readers if pipes is not None else (b"", b"")
    finally:
        readers.cancel()
        await asyncio.gather(readers, return_exceptions=True)
        for r, _ in pipes or ():
            os.close(r)
    elapsed = (time.perf_counter() - started) * 1000
    if code != 0 and check:
        logger.debug("%s.failed in %.1f ms: %s", name, elapsed, args)
        raise CommandError(args, code, stderr.decode(errors="replace"))
    logger.debug("%s.complete in %.1f ms: %s", name, elapsed, args[1:4])
    return stdout.decode(errors="replace")


def spawn(argv: Sequence[str], *, fds: Mapping[int, int]) -> int:
    """Start ``argv`` with ``fds`` (the child's fd -> ours) in place, stdin /dev/null unless
    ``fds`` names fd 0, and claim it for our own waiter: the caller must `finish` it.

    The command leads a process group of its own, so that killing it takes the helpers it
    started too (runc's ``criu swrk``), and a terminal's Ctrl-C reaches only the server."""
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, ours, target) for target, ours in {0: devnull, **fds}.items()]
        pid = os.posix_spawnp(argv[0], list(argv), os.environ, file_actions=actions, setpgroup=0)
    except OSError as exc:
        raise errors.RuntimeDriverError(f"cannot run {os.path.basename(argv[0])}: {exc}") from exc
    finally:
        os.close(devnull)
    _WAITED.add(pid)
    return pid


async def finish(pid: int, argv: Sequence[str], timeout: float) -> int:
    """Wait for the command `spawn` started, at most ``timeout`` seconds, and return its exit
    code. Past the deadline, or when the caller is cancelled, its process group is SIGKILLed
    and it is reaped first: no host command outlives the operation that ran it."""
    waiter = asyncio.ensure_future(wait_pid(pid))
    try:
        return await asyncio.wait_for(asyncio.shield(waiter), timeout)
    except TimeoutError:
        logger.warning("%s timed out after %g s: killed (%s)", os.path.basename(argv[0]), timeout, list(argv[1:4]))
        raise CommandTimeout(argv, timeout) from None
    finally:
        if not waiter.done():
            os.killpg(pid, signal.SIGKILL)  # its leader is our unreaped child: not reused
            await asyncio.shield(waiter)


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

    A pidfd turns the exit into a readable fd the event loop can watch. While this waits, the
    pid is in `_WAITED`, so no orphan reaper takes its status.
    """
    _WAITED.add(pid)
    try:
        fd = os.pidfd_open(pid)
        try:
            await readable(fd)
        finally:
            os.close(fd)
        _, status = os.waitpid(pid, 0)  # noqa: ASYNC222 - the pidfd said it exited; this returns at once
    finally:
        _WAITED.discard(pid)
    return os.waitstatus_to_exitcode(status)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


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


def zombie_children(*named: str) -> set[int]:
    """Our children that have exited and wait to be reaped (only those called one of ``named``,
    if any is given), found in one walk of /proc."""
    me = os.getpid()
    names = {n.encode() for n in named}
    found = set()
    for pid, stat in _proc_files("stat"):
        name, fields = stat[stat.index(b"(") + 1 : stat.rindex(b")")], stat.rsplit(b")", 1)[1].split()
        if fields[0] == b"Z" and int(fields[1]) == me and (not names or name in names):
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


def reap_orphans_now(*named: str, among: Collection[int] | None = None) -> None:
    """Reap the zombies among our children that nobody waits for (only those called one of
    ``named``, if any is given; only those ``among`` the given pids)."""
    _reap({pid for pid in zombie_children(*named) - _WAITED if among is None or pid in among})


async def reap_orphans(interval: float) -> None:
    """Reap, forever, the orphans handed to us as subreaper.

    A subreaper inherits every orphaned descendant, not only sandbox inits: a daemonised
    helper of a host command, a process left by a killed debootstrap. Nobody else waits for
    those, so their zombies would pile up. A zombie outside `_WAITED` is reaped once it has
    stayed one for a whole ``interval``: a child that somebody starts outside `spawn` (a
    `subprocess.run`) is waited for the moment it exits, so only the unclaimed ones last
    that long. The scan of /proc runs in a thread: with many sandboxes it reads thousands of
    files, which the event loop should not wait for.
    """
    seen: set[int] = set()
    while True:
        await asyncio.sleep(interval)
        now = await asyncio.to_thread(zombie_children) - _WAITED
        _reap(now & seen)
        seen = now


def _reap(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
