"""Errors of the lifecycle layer. They say what went wrong, never how a transport answers it:
the api layer gives each its HTTP status (`sandlot.api.errors.FAULTS`).

* LifecycleError          ``retry_after``: seconds after which trying again may succeed, if known
  + SandboxNotFound       no such live sandbox of this team
  + InvalidRequest        the ask cannot be honoured as given (bad template name, CIDR...)
  + TemplateNotFound
  + SnapshotNotFound      no such live snapshot of this team
  + Conflict              the sandbox is not in a state that allows it (pause of a paused one)
  + Overloaded            too many requests wait already; ``retry_after`` is a fair wait
  + NotSupported          the runtime driver cannot do it (checkpoints, snapshots)
  + RuntimeFailure        the runtime failed; the message says what, nothing half-made stays
  + Unavailable           nothing can serve the request now (no runner became free in time,
                          the host's memory is fully promised)
  + InsufficientStorage   the data filesystem's free-space floor or the team's storage quota
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "InsufficientStorage",
    "InvalidRequest",
    "LifecycleError",
    "NotSupported",
    "Overloaded",
    "RuntimeFailure",
    "SandboxNotFound",
    "SnapshotNotFound",
    "TemplateNotFound",
    "Unavailable",
]


class LifecycleError(Exception):
    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SandboxNotFound(LifecycleError):
    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"sandbox {sandbox_id!r} not found")
        self.sandbox_id = sandbox_id


class SnapshotNotFound(LifecycleError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"snapshot {ref!r} not found")
        self.ref = ref


class InvalidRequest(LifecycleError):
    pass


class TemplateNotFound(LifecycleError):
    pass


class Conflict(LifecycleError):
    pass


class Overloaded(LifecycleError):
    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class Unavailable(LifecycleError):
    pass


class InsufficientStorage(LifecycleError):
    pass


class NotSupported(LifecycleError):
    pass


class RuntimeFailure(LifecycleError):
    pass
