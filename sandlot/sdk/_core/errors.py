"""Wire errors as :mod:`sandlot.sdk.exceptions`, in both directions.

The table of Connect codes and HTTP statuses is :mod:`sandlot._wire.codes`, the one the server
and the agent answer with; this module only says which SDK class stands for each of its rows
(:data:`CLASSES`). Three kinds of error answer reach the SDK:

* Connect errors (``{"code": "not_found", "message": ...}`` on a unary call, or the ``error``
  of a stream's end envelope) carry a Connect code string.
* Control-plane and ``/files`` errors (``{"code": 404, "message": ...}``) carry an HTTP
  status; :func:`sandlot._wire.codes.code_of_status` turns it into a Connect code first, exactly
  as the e2b SDK does (docs/e2b-wire.md §4.1), so both planes share one mapping.
* A proxy-style 502 ``{"code":502,"message":"The sandbox was not found"}`` becomes
  ``unavailable`` by that rule; its text is what tells a gone sandbox
  (:class:`SandboxNotRunningError`) from a busy server (§10.2).

:func:`code_for` and :func:`status_for` read the table backwards: the code and status a server
answers with for what the SDK raises, so a test can hold both ends to the same row.

Example:
    >>> error_from_connect("not_found", "no such process").__class__.__name__
    'NotFoundError'
    >>> code_for(exceptions.PathNotFoundError("x"))
    'not_found'
"""

from __future__ import annotations

import datetime
import email.utils
import json
from collections.abc import Mapping

from sandlot._wire import codes
from sandlot.sdk import exceptions

__all__ = [
    "CLASSES",
    "CODES",
    "code_for",
    "error_from_connect",
    "error_from_http",
    "error_from_transport",
    "status_for",
]

#: Each row of :data:`sandlot._wire.codes.FAULTS` and the SDK class that stands for it. Read
#: forwards, the first row of a code gives its class; read backwards, the first row whose class is
#: in an exception's MRO gives the code and status a server answers with, so canonical rows come
#: first (deadline_exceeded before canceled, internal before unknown).
CLASSES: tuple[tuple[codes.Fault, type[exceptions.SandlotError]], ...] = (
    (codes.UNAUTHENTICATED, exceptions.AuthenticationError),
    (codes.PERMISSION_DENIED, exceptions.PermissionDeniedError),
    (codes.NOT_FOUND, exceptions.NotFoundError),
    (codes.ALREADY_EXISTS, exceptions.AlreadyExistsError),
    (codes.INVALID_ARGUMENT, exceptions.InvalidArgumentError),
    (codes.FAILED_PRECONDITION, exceptions.InvalidArgumentError),
    (codes.OUT_OF_RANGE, exceptions.InvalidArgumentError),
    (codes.RESOURCE_EXHAUSTED, exceptions.RateLimitedError),
    (codes.DEADLINE_EXCEEDED, exceptions.TimeoutError),
    (codes.CANCELED, exceptions.TimeoutError),
    (codes.UNIMPLEMENTED, exceptions.UnsupportedError),
    (codes.UNAVAILABLE, exceptions.UnavailableError),
    (codes.INTERNAL, exceptions.ServerError),
    (codes.UNKNOWN, exceptions.ServerError),
    (codes.ABORTED, exceptions.ServerError),
    (codes.DATA_LOSS, exceptions.ServerError),
    (codes.GONE, exceptions.SandboxNotRunningError),
    (codes.NO_SPACE, exceptions.NotEnoughSpaceError),
)

#: Connect code -> exception class (the forward reading of :data:`CLASSES`).
CODES: dict[str, type[exceptions.SandlotError]] = {}
for _fault, _cls in CLASSES:
    CODES.setdefault(_fault.code.value, _cls)

# Subclasses that a *context* picks for a generic code: a not_found from the filesystem service
# is a missing path, from the control plane a missing sandbox.
_NARROWER: dict[tuple[str, str], type[exceptions.SandlotError]] = {
    (codes.Code.NOT_FOUND, "filesystem"): exceptions.PathNotFoundError,
    (codes.Code.NOT_FOUND, "sandbox"): exceptions.SandboxNotFoundError,
    (codes.Code.NOT_FOUND, "template"): exceptions.TemplateNotFoundError,
}

_GONE_MARKER = "was not found"  # §10.2: the literal a server uses for a killed/paused/expired sandbox


def error_from_connect(
    code: str,
    message: str,
    *,
    status: int | None = None,
    context: str | None = None,
    retry_after: float | None = None,
) -> exceptions.SandlotError:
    """The exception for a Connect error ``code`` with ``message``.

    Args:
        code: A Connect code string; an unknown one maps to :class:`ServerError`.
        message: The server's text.
        status: The HTTP status the error came with, if any.
        context: ``"filesystem"``, ``"sandbox"`` or ``"template"`` to pick a narrower ``NotFoundError``.
        retry_after: Seconds from a ``Retry-After`` header, for :class:`RateLimitedError`.

    Example:
        >>> error_from_connect("unavailable", "The sandbox was not found")
        SandboxNotRunningError('The sandbox was not found')
    """
    if code == codes.Code.UNAVAILABLE and _GONE_MARKER in message:
        return exceptions.SandboxNotRunningError(message, status=status, code=code)
    cls = _NARROWER.get((code, context or "")) or CODES.get(code, exceptions.ServerError)
    if cls is exceptions.RateLimitedError:
        return exceptions.RateLimitedError(message, status=status, code=code, retry_after=retry_after)
    return cls(message, status=status, code=code)


def error_from_http(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    context: str | None = None,
) -> exceptions.SandlotError:
    """The exception for an HTTP error answer (``status`` ≥ 400) with its raw ``body``.

    A JSON body with a *string* ``code`` that is a Connect code is a Connect error; otherwise the
    status (or an integer ``code`` in the body) decides, as in docs/e2b-wire.md §4.1. The
    message is the body's ``message`` if there is one, else its text.

    Example:
        >>> error_from_http(404, b'{"code":404,"message":"sandbox x not found"}', context="sandbox")
        SandboxNotFoundError('404: sandbox x not found')
    """
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    text = body.decode("utf-8", errors="replace").strip()
    message, code = text, None
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        if isinstance(parsed.get("message"), str):
            message = parsed["message"]
        if isinstance(parsed.get("code"), str) and parsed["code"] in CODES:
            code = parsed["code"]
        elif isinstance(parsed.get("code"), int) and (by_code := codes.code_of_status(parsed["code"])):
            code = by_code.value
    if code is None:
        code = (codes.code_of_status(status) or codes.Code.UNKNOWN).value
    if status == codes.NO_SPACE.status:
        return exceptions.NotEnoughSpaceError(f"{status}: {message}", status=status, code=code)
    retry_after = _retry_after(headers.get("retry-after"))
    if not message:
        message = f"HTTP {status}"
    if code == codes.Code.UNAVAILABLE and _GONE_MARKER in message:
        return exceptions.SandboxNotRunningError(message, status=status, code=code)
    return error_from_connect(code, f"{status}: {message}", status=status, context=context, retry_after=retry_after)


def error_from_transport(exc: Exception, url: str) -> exceptions.SandlotError:
    """The exception for a failure below HTTP (refused connection, reset, client timeout).

    Example:
        >>> import httpx
        >>> error_from_transport(httpx.ConnectError("refused"), "http://127.0.0.1:1")
        UnavailableError('cannot reach http://127.0.0.1:1: refused')
    """
    import httpx  # only its exception classes: no I/O happens here

    if isinstance(exc, httpx.TimeoutException):
        return exceptions.TimeoutError(f"timed out talking to {url}: {exc or type(exc).__name__}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return exceptions.ProtocolError(f"the server at {url} broke the connection: {exc}")
    return exceptions.UnavailableError(f"cannot reach {url}: {exc or type(exc).__name__}")


def code_for(exc: BaseException) -> str:
    """The Connect code a server should answer with for ``exc`` (``"unknown"`` if none fits).

    Example:
        >>> code_for(exceptions.AuthenticationError("bad token"))
        'unauthenticated'
    """
    return _row_for(exc)[0]


def status_for(exc: BaseException) -> int:
    """The HTTP status a server should answer with for ``exc``.

    Example:
        >>> status_for(exceptions.SandboxNotFoundError("x"))
        404
        >>> status_for(exceptions.SandboxNotRunningError("The sandbox was not found"))
        502
    """
    return _row_for(exc)[1]


def _row_for(exc: BaseException) -> tuple[str, int]:
    for cls in type(exc).__mro__:
        for fault, mapped in CLASSES:
            if mapped is cls:
                return fault.code.value, fault.status
    return codes.UNKNOWN.code.value, codes.UNKNOWN.status


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds from now: delta-seconds, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
