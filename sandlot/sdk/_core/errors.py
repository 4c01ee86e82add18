"""The one table between wire errors and :mod:`sandlot.sdk.exceptions`, in both directions.

Three kinds of error answer reach the SDK, and all of them go through :data:`CODES`:

* Connect errors (``{"code": "not_found", "message": ...}`` on a unary call, or the ``error``
  of a stream's end envelope) carry a Connect code string.
* Control-plane and ``/files`` errors (``{"code": 404, "message": ...}``) carry an HTTP
  status; :data:`STATUS_TO_CODE` turns it into a Connect code first, exactly as the e2b SDK
  does (docs/e2b-wire.md §4.1), so both planes share one mapping.
* A proxy-style 502 ``{"code":502,"message":"The sandbox was not found"}`` becomes
  ``unavailable`` by that rule; its text is what tells a gone sandbox
  (:class:`SandboxNotRunningError`) from a busy server (§10.2).

The server and the agent use the reverse direction (:func:`code_for`, :func:`status_for`) to
answer with the code a client maps back to the same class.

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

from sandlot.sdk import exceptions

__all__ = [
    "CODES",
    "STATUS_TO_CODE",
    "TABLE",
    "code_for",
    "error_from_connect",
    "error_from_http",
    "error_from_transport",
    "status_for",
]

#: The one table: (Connect code, HTTP status, exception class). Read forwards, the first row of a
#: code gives its class; read backwards, the first row whose class is in an exception's MRO gives
#: the code and status a server answers with. Canonical rows come first (deadline_exceeded before
#: canceled, internal before unknown); the last two rows exist only for the backward direction.
TABLE: tuple[tuple[str, int, type[exceptions.SandlotError]], ...] = (
    ("unauthenticated", 401, exceptions.AuthenticationError),
    ("permission_denied", 403, exceptions.PermissionDeniedError),
    ("not_found", 404, exceptions.NotFoundError),
    ("already_exists", 409, exceptions.AlreadyExistsError),
    ("invalid_argument", 400, exceptions.InvalidArgumentError),
    ("failed_precondition", 400, exceptions.InvalidArgumentError),
    ("out_of_range", 400, exceptions.InvalidArgumentError),
    ("resource_exhausted", 429, exceptions.RateLimitedError),
    ("deadline_exceeded", 504, exceptions.TimeoutError),
    ("canceled", 499, exceptions.TimeoutError),
    ("unimplemented", 501, exceptions.UnsupportedError),
    ("unavailable", 503, exceptions.UnavailableError),
    ("internal", 500, exceptions.ServerError),
    ("unknown", 500, exceptions.ServerError),
    ("aborted", 409, exceptions.ServerError),
    ("data_loss", 500, exceptions.ServerError),
    ("unavailable", 502, exceptions.SandboxNotRunningError),
    ("resource_exhausted", 507, exceptions.NotEnoughSpaceError),
)

#: Connect code -> exception class (the forward reading of :data:`TABLE`).
CODES: dict[str, type[exceptions.SandlotError]] = {}
for _code, _status, _cls in TABLE:
    CODES.setdefault(_code, _cls)

#: HTTP status -> Connect code, for answers that carry a status rather than a code (§4.1).
STATUS_TO_CODE: dict[int, str] = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "already_exists",
    413: "resource_exhausted",
    422: "invalid_argument",
    429: "resource_exhausted",
    499: "canceled",
    500: "internal",
    501: "unimplemented",
    502: "unavailable",
    503: "unavailable",
    504: "deadline_exceeded",
    505: "unimplemented",
}

# Subclasses that a *context* picks for a generic code: a not_found from the filesystem service
# is a missing path, from the control plane a missing sandbox.
_NARROWER: dict[tuple[str, str], type[exceptions.SandlotError]] = {
    ("not_found", "filesystem"): exceptions.PathNotFoundError,
    ("not_found", "sandbox"): exceptions.SandboxNotFoundError,
    ("not_found", "template"): exceptions.TemplateNotFoundError,
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
    if code == "unavailable" and _GONE_MARKER in message:
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
        elif isinstance(parsed.get("code"), int) and parsed["code"] in STATUS_TO_CODE:
            code = STATUS_TO_CODE[parsed["code"]]
    if code is None:
        code = STATUS_TO_CODE.get(status, "unknown")
    if status == 507:
        return exceptions.NotEnoughSpaceError(f"{status}: {message}", status=status, code=code)
    retry_after = _retry_after(headers.get("retry-after"))
    if not message:
        message = f"HTTP {status}"
    if code == "unavailable" and _GONE_MARKER in message:
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
        for code, status, mapped in TABLE:
            if mapped is cls:
                return code, status
    return "unknown", 500


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
