"""The processes of a `FakeDriver` sandbox: a model of five commands, and their images.

``echo`` prints its arguments, ``true`` and ``false`` exit 0 and 1, ``cat`` copies stdin to
stdout until stdin closes, ``sleep`` runs until a signal ends it; any other program does not
exist (ENOENT). Time never passes: what a program does, it does at once. A checkpoint's
"memory" is the table of running processes as JSON (`Table.dump`), which `Table.load` reads
back, so that a copy or a restore goes on with the same processes.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import errno
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from sandlot.runtime import base, errors, models

__all__ = ["Handle", "Process", "Table"]

PROGRAMS = frozenset({"echo", "true", "false", "cat", "sleep"})
_IMAGE = "fake-memory.json"
"""The one file of a checkpoint's images."""

_Item = tuple[base.OutputStream, bytes] | models.ExitStatus | None
"""What a handle is sent: an output chunk, or its end (the exit, or None when it was cut)."""


class Process:
    """One running (or ended) program of the model, and the handles that follow it."""

    def __init__(self, pid: int, spec: models.ProcessSpec) -> None:
        self.program = spec.argv[0].rsplit("/", 1)[-1]
        if self.program not in PROGRAMS:
            raise errors.ProcessStartError(f"{spec.argv[0]}: no such file or directory", errno.ENOENT)
        self.pid = pid
        self.spec = spec
        self.stdin_open = spec.stdin
        self.exit: models.ExitStatus | None = None
        self.handles: set[Handle] = set()

    def run(self) -> None:
        """What the program does as soon as it starts."""
        if self.program == "echo":
            self._send((base.OutputStream.STDOUT, (" ".join(self.spec.argv[1:]) + "\n").encode()))
        if self.program in ("echo", "true", "false") or (self.program == "cat" and not self.stdin_open):
            self.end(models.ExitStatus(exit_code=int(self.program == "false")))

    def _send(self, item: _Item) -> None:
        for handle in self.handles:
            handle.put(item)
        if item is None or isinstance(item, models.ExitStatus):
            self.handles.clear()

    def write(self, data: bytes) -> None:
        if not self.stdin_open:
            raise errors.RuntimeDriverError(f"the stdin of pid {self.pid} is closed")
        if self.program == "cat":
            self._send((base.OutputStream.STDOUT, data))

    def close_stdin(self) -> None:
        self.stdin_open = False
        if self.program == "cat":
            self.end(models.ExitStatus(exit_code=0))

    def end(self, status: models.ExitStatus) -> None:
        self.exit = status
        self._send(status)

    def cut(self) -> None:
        """End every handle on it before the exit (`errors.StreamClosed`), as the driver ends
        streams at a checkpoint; the process goes on."""
        self._send(None)

    def info(self) -> models.ProcessInfo:
        spec = self.spec
        return models.ProcessInfo(self.pid, tuple(spec.argv), spec.cwd or "/home/user", spec.pty is not None, spec.tag)

    def image(self) -> dict[str, Any]:
        spec = self.spec
        pty = dataclasses.asdict(spec.pty) if spec.pty else None
        return {"pid": self.pid, "argv": list(spec.argv), "env": dict(spec.env), "cwd": spec.cwd,
                "user": spec.user, "tag": spec.tag, "pty": pty, "stdin": self.stdin_open}

    @classmethod
    def from_image(cls, data: dict[str, Any]) -> Process:
        pty = models.PtySize(**data["pty"]) if data["pty"] else None
        spec = models.ProcessSpec(argv=data["argv"], env=data["env"], cwd=data["cwd"], user=data["user"],
                                  stdin=data["stdin"], pty=pty, tag=data["tag"])
        return cls(data["pid"], spec)


class Handle:
    """`base.Process` on a `Process`: its output from now on, its stdin, its exit."""

    def __init__(self, process: Process) -> None:
        self._process = process
        self._items: asyncio.Queue[_Item] = asyncio.Queue()
        self._exit: models.ExitStatus | None = None
        self._closed = False
        process.handles.add(self)

    @property
    def pid(self) -> int:
        return self._process.pid

    def put(self, item: _Item) -> None:
        self._items.put_nowait(item)

    async def output(self) -> AsyncIterator[tuple[base.OutputStream, bytes]]:
        while True:
            item = await self._items.get()
            if item is None or isinstance(item, models.ExitStatus):
                self._exit = item or self._exit
                self._items.put_nowait(item)  # ended for whoever reads next too
                return
            yield item

    async def wait(self) -> models.ExitStatus:
        async for _ in self.output():
            pass
        if self._exit is None:
            raise errors.StreamClosed(self.pid)
        return self._exit

    def _alive(self) -> Process:
        if self._process.exit is not None:
            raise errors.ProcessNotFound(self.pid)
        if self._closed or self not in self._process.handles:
            raise errors.RuntimeDriverError(f"the handle on pid {self.pid} is closed")
        return self._process

    async def write_stdin(self, data: bytes) -> None:
        self._alive().write(data)

    async def close_stdin(self) -> None:
        self._alive().close_stdin()

    async def signal(self, signum: int) -> None:
        """Every signal ends the process, as most signals' default action does."""
        self._alive().end(models.ExitStatus(exit_code=None, signal=signum))

    async def resize(self, size: models.PtySize) -> None:
        self._alive()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._process.handles.discard(self)
            self.put(None)


class Table:
    """The processes of one sandbox by pid (init, pid 1, is not among them)."""

    def __init__(self, processes: Iterable[Process] = (), next_pid: int = 2) -> None:
        self._by_pid = {p.pid: p for p in processes}
        self._next_pid = next_pid

    def start(self, spec: models.ProcessSpec) -> Handle:
        process = Process(self._next_pid, spec)
        self._next_pid += 1
        handle = Handle(process)
        process.run()
        if process.exit is None:
            self._by_pid[process.pid] = process
        return handle

    def attach(self, pid: int) -> Handle:
        process = self._by_pid.get(pid)
        if process is None or process.exit is not None:
            raise errors.ProcessNotFound(pid)
        return Handle(process)

    def running(self) -> builtins.list[Process]:
        return [p for p in self._by_pid.values() if p.exit is None]

    def cut(self) -> None:
        """End every handle, the processes going on (`Process.cut`)."""
        for process in self._by_pid.values():
            process.cut()

    def end(self, status: models.ExitStatus | None) -> None:
        """End every process: its handles see ``status``, or are cut when None (a checkpoint,
        a destroy: the exit is never seen)."""
        for process in self.running():
            if status is None:
                process.cut()
            else:
                process.end(status)
        self._by_pid.clear()

    def dump(self, image_dir: Path) -> None:
        """Write the running processes into ``image_dir``, which must not exist."""
        image = {"next_pid": self._next_pid, "processes": [p.image() for p in self.running()]}
        try:
            image_dir.mkdir(mode=0o700)
            (image_dir / _IMAGE).write_text(json.dumps(image))
        except OSError as exc:
            raise errors.RuntimeDriverError(f"writing the images to {image_dir} failed: {exc}") from exc

    @classmethod
    def load(cls, image_dir: Path) -> Table:
        """The processes `dump` wrote, running again."""
        try:
            image = json.loads((image_dir / _IMAGE).read_text())
            return cls([Process.from_image(p) for p in image["processes"]], int(image["next_pid"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise errors.RuntimeDriverError(f"the images in {image_dir} are not readable: {exc}") from exc
