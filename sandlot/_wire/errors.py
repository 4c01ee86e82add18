"""The errors a server side answers with: each class names its row of `codes.FAULTS`.

The agent's services raise these (``sandlot.agent.rpc`` re-exports them under the names the
services use); the Connect transport answers with the code and Connect's status of the code,
``/files`` with the row's status in the E2B REST shape. So nothing that raises names a wire code
or a status, and the two planes cannot drift apart again.

* WireError               internal (500)
  + InvalidArgument       a malformed message, a path that is not a directory...
  + NotFound              no such file, process or watcher
  + AlreadyExists
  + PermissionDenied
  + FailedPrecondition
  + ResourceExhausted     too large, too many (429)
    - NoSpace             the disk is full (507 in the REST shape)
  + DeadlineExceeded
  + Canceled              the client went away
  + Unavailable           the sandbox stopped answering (502 in the REST shape, 503 in Connect)
  + Unimplemented
  + Internal

Example:
    >>> exc = NoSpace("disk full")
    >>> exc.code.value, exc.status, exc.connect_status
    ('resource_exhausted', 507, 429)
"""

from __future__ import annotations

from typing import ClassVar

from sandlot._wire import codes

__all__ = [
    "AlreadyExists",
    "Canceled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NoSpace",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "Unimplemented",
    "WireError",
]


class WireError(Exception):
    """Root of the errors answered over the wire.

    Args:
        message: What went wrong, for the client to read.
        status: An HTTP status that overrides the row's, for failures of HTTP itself (405 for a
            GET, 413 for a body too large, 415 for a wrong content type), as Connect servers do.
    """

    fault: ClassVar[codes.Fault] = codes.INTERNAL

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self._status = status

    @property
    def code(self) -> codes.Code:
        return self.fault.code

    @property
    def status(self) -> int:
        """The HTTP status of this error in the E2B REST shape (``/files``)."""
        return self._status if self._status is not None else self.fault.status

    @property
    def connect_status(self) -> int:
        """The HTTP status of this error as a unary Connect answer: Connect's status of its code."""
        return self._status if self._status is not None else codes.STATUS[self.fault.code]


class InvalidArgument(WireError):
    fault = codes.INVALID_ARGUMENT


class NotFound(WireError):
    fault = codes.NOT_FOUND


class AlreadyExists(WireError):
    fault = codes.ALREADY_EXISTS


class PermissionDenied(WireError):
    fault = codes.PERMISSION_DENIED


class FailedPrecondition(WireError):
    fault = codes.FAILED_PRECONDITION


class ResourceExhausted(WireError):
    fault = codes.RESOURCE_EXHAUSTED


class NoSpace(ResourceExhausted):
    fault = codes.NO_SPACE


class DeadlineExceeded(WireError):
    fault = codes.DEADLINE_EXCEEDED


class Canceled(WireError):
    fault = codes.CANCELED


class Unavailable(WireError):
    fault = codes.GONE


class Unimplemented(WireError):
    fault = codes.UNIMPLEMENTED


class Internal(WireError):
    fault = codes.INTERNAL
