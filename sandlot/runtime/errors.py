"""Errors a runtime driver raises.

* RuntimeDriverError
  + SandboxNotFound
  + SandboxExists
  + SandboxStateError      (e.g. starting a process in a paused sandbox)
  + TemplateNotFound
  + ProcessNotFound
  + ProcessStartError      (the program could not be executed: no such file, permission...)

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
    "TemplateNotFound",
]


class RuntimeDriverError(Exception):
    """Something below the runtime interface failed."""


class SandboxNotFound(RuntimeDriverError):
    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"sandbox {sandbox_id!r} does not exist")
        self.sandbox_id = sandbox_id


class SandboxExists(RuntimeDriverError):
    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"sandbox {sandbox_id!r} already exists")
        self.sandbox_id = sandbox_id


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
