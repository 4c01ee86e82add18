"""The one interface every runtime driver implements.

The layers above speak only this protocol and the models of `sandlot.runtime.models`; which
driver serves it is chosen by name from the ``sandlot.runtime_drivers`` entry points
(`sandlot.runtime.drivers.load`). Every method is async and keyword-only, so call sites read
``await driver.destroy(sandbox_id=...)``.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Protocol

from sandlot.runtime import models

__all__ = ["OutputStream", "Process", "RuntimeDriver"]


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
