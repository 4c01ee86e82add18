"""Errors of the lifecycle layer; the api layer maps each to one HTTP status.

* LifecycleError
  + SandboxNotFound       404: no such live sandbox of this team
  + InvalidRequest        400: the ask cannot be honoured as given (bad template name, CIDR...)
  + TemplateNotFound      404
  + SnapshotNotFound      404: no such live snapshot of this team
  + Conflict              409: the sandbox is not in a state that allows it (pause of a paused one)
  + Overloaded            429: too many requests wait already; ``retry_after`` seconds is a fair wait
  + NotSupported          501: the runtime driver cannot do it (checkpoints, snapshots)
  + RuntimeFailure        500: the runtime failed; the message says what, nothing half-made stays
  + Unavailable           503: nothing can serve the request now (no runner became free in time,
                               the host's memory is fully promised); ``retry_after`` when known
  + InsufficientStorage   507: the data filesystem's free-space floor or the team's storage quota
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
    status = 500


class SandboxNotFound(LifecycleError):
    status = 404

    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"sandbox {sandbox_id!r} not found")
        self.sandbox_id = sandbox_id


class InvalidRequest(LifecycleError):
    status = 400


class TemplateNotFound(LifecycleError):
    status = 404


class SnapshotNotFound(LifecycleError):
    status = 404

    def __init__(self, ref: str) -> None:
        super().__init__(f"snapshot {ref!r} not found")
        self.ref = ref


class Conflict(LifecycleError):
    status = 409


class Overloaded(LifecycleError):
    status = 429

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(LifecycleError):
    status = 503

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InsufficientStorage(LifecycleError):
    status = 507


class NotSupported(LifecycleError):
    status = 501


class RuntimeFailure(LifecycleError):
    status = 500
