"""The one interface every runtime driver implements.

The layers above speak only this protocol and the models of `sandlot.runtime.models`; which
driver serves it is chosen by name from the ``sandlot.runtime_drivers`` entry points
(`sandlot.runtime.drivers.load`). Every method is async and keyword-only, so call sites read
``await driver.destroy(sandbox_id=...)``.

`RuntimeDriver` is what every driver does. What only some substrates can do is a capability of
its own (`Checkpointing`, `Forking`, `Snapshotting`, `Restarting`): a driver has it when it
has the protocol's methods, checked once with `capability`, so the layers above never probe
for a method by name.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from sandlot.runtime import models

__all__ = [
    "Checkpointing",
    "Forking",
    "OutputStream",
    "Process",
    "Restarting",
    "RuntimeDriver",
    "Snapshotting",
    "capability",
]


class OutputStream(enum.IntEnum):
    STDOUT = 1
    STDERR = 2


class Process(Protocol):
    """A handle on one process inside a sandbox.

    Closing the handle (`aclose`) detaches from the process; it goes on running, and `attach`
    gives a new handle on it.
    """

    @property
    def pid(self) -> int:
        """The process id inside the sandbox's pid namespace."""

    def output(self) -> AsyncIterator[tuple[OutputStream, bytes]]:
        """Chunks of stdout and stderr as they come; ends when the process has exited.

        With a PTY everything arrives as STDOUT.
        """

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def signal(self, signum: int) -> None: ...

    async def resize(self, size: models.PtySize) -> None: ...

    async def wait(self) -> models.ExitStatus:
        """Wait for the exit, draining (and dropping) output nobody has read."""

    async def aclose(self) -> None: ...


class RuntimeDriver(Protocol):
    """Creates, runs, pauses and destroys sandboxes on some substrate (runc, Kubernetes...)."""

    async def create(self, *, spec: models.SandboxSpec) -> models.SandboxInfo:
        """Make and start a sandbox; on any failure nothing of it is left behind."""

    async def info(self, *, sandbox_id: str) -> models.SandboxInfo: ...

    async def list(self) -> list[models.SandboxInfo]:
        """Every sandbox this driver holds on the host, whoever asked for it."""

    async def start(self, *, sandbox_id: str, process: models.ProcessSpec) -> Process:
        """Start a process; raises `ProcessStartError` when the program cannot run."""

    async def attach(self, *, sandbox_id: str, pid: int) -> Process:
        """A new handle on a running process: its output from now on, its stdin, its exit."""

    async def processes(self, *, sandbox_id: str) -> builtins.list[models.ProcessInfo]:
        """The processes started through `start` that are still running."""

    async def pause(self, *, sandbox_id: str) -> None:
        """Freeze every process of the sandbox where it is."""

    async def resume(self, *, sandbox_id: str) -> None: ...

    async def stats(self, *, sandbox_id: str) -> models.Stats: ...

    async def update(
        self, *, sandbox_id: str, limits: models.Limits | None = None, network: models.NetworkPolicy | None = None
    ) -> None:
        """Change a running sandbox's memory, CPU and pids limits or its network policy."""

    async def reset(self, *, sandbox_id: str) -> None:
        """Make a runner sandbox (`models.SandboxSpec.runner`) as new between two runs."""

    async def put_files(self, *, sandbox_id: str, files: Mapping[str, bytes]) -> None:
        """Write the files of a runner sandbox's next run into its working directory."""

    async def filesystem(self, *, sandbox_id: str) -> models.HostFilesystem:
        """The sandbox's root filesystem as the host sees it, for the file services."""

    async def destroy(self, *, sandbox_id: str) -> None:
        """Kill the sandbox and remove everything it held; idempotent, and thorough when a
        previous attempt failed halfway."""

    async def reconcile(self, *, known: Collection[str]) -> models.ReconcileReport:
        """Remove what the host holds for sandboxes outside ``known`` (after a crash)."""

    async def aclose(self) -> None:
        """Release the driver's own resources; the sandboxes stay."""


@runtime_checkable
class Checkpointing(Protocol):
    """Pause with memory kept: a sandbox's processes dumped to images, and brought back."""

    async def checkpoint(self, *, sandbox_id: str, image_dir: Path) -> None:
        """Dump the sandbox's processes into ``image_dir`` (which must not exist yet) and stop
        them; the sandbox holds no memory or CPU until `restore`."""

    async def restore(self, *, sandbox_id: str) -> models.SandboxInfo:
        """Bring a checkpointed sandbox back: every process goes on where it was."""


@runtime_checkable
class Forking(Protocol):
    async def fork(
        self, *, sandbox_id: str, children: Sequence[models.SandboxSpec], image_dir: Path
    ) -> builtins.list[models.SandboxInfo]:
        """New sandboxes, each a copy of ``sandbox_id``'s memory and files as they are now;
        all are made or none."""


@runtime_checkable
class Snapshotting(Protocol):
    async def snapshot(self, *, sandbox_id: str, dest: Path, memory: bool = True) -> None:
        """Copy a running sandbox's files, and its memory unless ``memory`` is false, into
        ``dest``."""

    async def create_from_snapshot(self, *, spec: models.SandboxSpec, source: Path) -> models.SandboxInfo:
        """A new sandbox on a copy of a `snapshot`'s files, restored from its memory when it
        has one, else booted clean."""


@runtime_checkable
class Restarting(Protocol):
    async def restart(self, *, sandbox_id: str) -> models.SandboxInfo:
        """End every process of a sandbox (running or checkpointed) and boot it clean on its
        own disk."""


C = TypeVar("C")


def capability(driver: RuntimeDriver, kind: type[C]) -> C | None:
    """``driver`` as a ``kind`` (one of the capability protocols above), or None without it."""
    return driver if isinstance(driver, kind) else None
