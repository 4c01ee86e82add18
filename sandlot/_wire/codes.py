"""The one table of Connect codes and HTTP statuses, read both ways by server and SDK.

A `Fault` is one row: a Connect code and the HTTP status an answer of that kind carries. The
first sixteen rows are Connect's own table (one status per code, as the e2b SDK's Connect library,
connectrpc, writes them), so `STATUS` gives the status of a unary Connect error. Two more rows are
the E2B REST shape's (control plane, ``/files``, the sandbox proxy), where a status says more
than a code:

* `GONE`: 502, code ``unavailable``, message `GONE_MESSAGE`: the sandbox was paused, killed or
  expired (the e2b SDK tells it by the text ``was not found``), or its agent cannot be reached.
* `NO_SPACE`: 507, code ``resource_exhausted``: a full disk or storage quota (envd answers
  ``/files`` so; the e2b SDK raises ``NotEnoughSpaceException``).

Read backwards, `code_of_status` gives the code of an answer that carries only a status, as the
e2b SDK does for plain HTTP errors (``PLAIN_HTTP_ERROR_CODES``; docs/e2b-wire.md §4.1).

Where the four old copies disagreed, this table decides by what the e2b SDK and envd do:

* ``resource_exhausted`` is 429 (Connect's status; e2b's ``RateLimitException`` on both planes).
  ``/files`` answered every resource error 507; only a full disk is 507 now (`NO_SPACE`), which is
  all ``/files`` ever raised, so no answer changes.
* ``unavailable`` is 503 as a Connect answer and 502 (`GONE`) in the REST shape of the sandbox
  plane, as the e2b SDK reads both (``format_sandbox_unavailable_exception``).
* ``/files`` answered every error missing from its own table 500; it now answers with this one
  (``deadline_exceeded`` 504, ``failed_precondition`` 400, ``unimplemented`` 501).

Example:
    >>> STATUS[Code.NOT_FOUND], code_of_status(502), NO_SPACE.status
    (404, <Code.UNAVAILABLE: 'unavailable'>, 507)
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = [
    "ABORTED",
    "ALREADY_EXISTS",
    "CANCELED",
    "DATA_LOSS",
    "DEADLINE_EXCEEDED",
    "FAILED_PRECONDITION",
    "FAULTS",
    "GONE",
    "GONE_MESSAGE",
    "INTERNAL",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "NO_SPACE",
    "OUT_OF_RANGE",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "STATUS",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "UNIMPLEMENTED",
    "UNKNOWN",
    "Code",
    "Fault",
    "code_of_status",
    "error_body",
]


class Code(enum.StrEnum):
    """A Connect error code, as it travels in JSON."""

    CANCELED = "canceled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid_argument"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data_loss"
    UNAUTHENTICATED = "unauthenticated"


@dataclasses.dataclass(frozen=True)
class Fault:
    """One row of the table: what kind of error an answer reports, by code and by status."""

    code: Code
    status: int


# Connect's table, in the order the backward reading prefers (already_exists before aborted for
# 409, internal before unknown and data_loss for 500, invalid_argument first for 400).
INVALID_ARGUMENT = Fault(Code.INVALID_ARGUMENT, 400)
FAILED_PRECONDITION = Fault(Code.FAILED_PRECONDITION, 400)
OUT_OF_RANGE = Fault(Code.OUT_OF_RANGE, 400)
UNAUTHENTICATED = Fault(Code.UNAUTHENTICATED, 401)
PERMISSION_DENIED = Fault(Code.PERMISSION_DENIED, 403)
NOT_FOUND = Fault(Code.NOT_FOUND, 404)
ALREADY_EXISTS = Fault(Code.ALREADY_EXISTS, 409)
ABORTED = Fault(Code.ABORTED, 409)
RESOURCE_EXHAUSTED = Fault(Code.RESOURCE_EXHAUSTED, 429)
CANCELED = Fault(Code.CANCELED, 499)
INTERNAL = Fault(Code.INTERNAL, 500)
UNKNOWN = Fault(Code.UNKNOWN, 500)
DATA_LOSS = Fault(Code.DATA_LOSS, 500)
UNIMPLEMENTED = Fault(Code.UNIMPLEMENTED, 501)
UNAVAILABLE = Fault(Code.UNAVAILABLE, 503)
DEADLINE_EXCEEDED = Fault(Code.DEADLINE_EXCEEDED, 504)
# The E2B REST shape's own rows.
GONE = Fault(Code.UNAVAILABLE, 502)
NO_SPACE = Fault(Code.RESOURCE_EXHAUSTED, 507)

FAULTS: tuple[Fault, ...] = (
    INVALID_ARGUMENT,
    FAILED_PRECONDITION,
    OUT_OF_RANGE,
    UNAUTHENTICATED,
    PERMISSION_DENIED,
    NOT_FOUND,
    ALREADY_EXISTS,
    ABORTED,
    RESOURCE_EXHAUSTED,
    CANCELED,
    INTERNAL,
    UNKNOWN,
    DATA_LOSS,
    UNIMPLEMENTED,
    UNAVAILABLE,
    DEADLINE_EXCEEDED,
    GONE,
    NO_SPACE,
)
"""Every row; the first row of a code is its Connect row."""

GONE_MESSAGE = "The sandbox was not found"
"""The text of a `GONE` answer for a sandbox that is paused, killed or expired: the e2b SDK looks
for ``was not found`` in it."""

STATUS: dict[Code, int] = {}
"""The HTTP status of a unary Connect error with each code."""
_CODE_OF_STATUS: dict[int, Code] = {413: Code.RESOURCE_EXHAUSTED, 422: Code.INVALID_ARGUMENT, 505: Code.UNIMPLEMENTED}
for _fault in FAULTS:
    STATUS.setdefault(_fault.code, _fault.status)
    _CODE_OF_STATUS.setdefault(_fault.status, _fault.code)
del _fault


def code_of_status(status: int) -> Code | None:
    """The code of an answer that carries only an HTTP status (None for a status of no row).

    Example:
        >>> code_of_status(413), code_of_status(418)
        (<Code.RESOURCE_EXHAUSTED: 'resource_exhausted'>, None)
    """
    return _CODE_OF_STATUS.get(status)


def error_body(status: int, message: str) -> dict[str, int | str]:
    """An error in the E2B REST shape; the e2b SDK reads both keys before it looks at the status.

    Example:
        >>> error_body(GONE.status, GONE_MESSAGE)
        {'code': 502, 'message': 'The sandbox was not found'}
    """
    return {"code": status, "message": message}
