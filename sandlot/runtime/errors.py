"""Errors a runtime driver raises.

* RuntimeDriverError
  + SandboxNotFound
  + SandboxExists
  + SandboxStateError      (e.g. starting a process in a paused sandbox)
  + TemplateNotFound
  + ProcessNotFound
  + ProcessStartError      (the program could not be executed: no such file, permission...)
  + StreamClosed           (the driver ended a process's stream: a pause, fork, snapshot...)

Drivers translate whatever fails below them (a runc exit status, an OSError from a mount) into
one of these, keeping the cause: ``raise RuntimeDriverError(...) from exc``.
"""

from __future__ import annotations

__all__ = [
    "ProcessNotFound",
    "ProcessStartError",
    "RuntimeDriverError",
    "SandboxExists",
    "SandboxNotFound",
    "SandboxStateError",
    "StreamClosed",
    "TemplateNotFound",
]


class RuntimeDriverError(Exception):
    """Something below the runtime interface failed."""


class _AboutSandbox(RuntimeDriverError):
    """An error about the sandbox ``sandbox_id``; ``message`` says what, of ``{sandbox_id!r}``."""

    message = ""

    def __init__(self, sandbox_id: str) -> None:
        super().__init__(self.message.format(sandbox_id=sandbox_id))
        self.sandbox_id = sandbox_id


class SandboxNotFound(_AboutSandbox):
    message = "sandbox {sandbox_id!r} does not exist"


class SandboxExists(_AboutSandbox):
    message = "sandbox {sandbox_id!r} already exists"


class SandboxStateError(RuntimeDriverError):
    """The sandbox is not in a state that allows the operation."""


class TemplateNotFound(RuntimeDriverError):
    def __init__(self, template: str) -> None:
        super().__init__(f"template {template!r} is not built (run: sandlot template build {template})")
        self.template = template


class ProcessNotFound(RuntimeDriverError):
    def __init__(self, pid: int) -> None:
        super().__init__(f"no process with pid {pid} in the sandbox")
        self.pid = pid


class ProcessStartError(RuntimeDriverError):
    """The program could not be started; ``errno`` says why (ENOENT: no such program)."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class StreamClosed(RuntimeDriverError):
    """The driver closed the stream of a process before it exited: the sandbox was paused,
    forked, snapshotted, restarted or destroyed, and a stream cannot outlive a checkpoint
    (its host end is outside what CRIU saves). A process that still runs can be attached to
    again."""

    def __init__(self, pid: int) -> None:
        super().__init__(
            f"the stream of pid {pid} was ended by the server before the process exited: the "
            "sandbox was paused, forked, snapshotted, restarted or killed (a stream does not "
            "outlive a checkpoint); connect to the process again once the sandbox runs"
        )
        self.pid = pid
