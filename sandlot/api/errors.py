"""Every error of the control plane as ``{"code": int, "message": str}``.

The e2b SDK parses error bodies before it looks at the status (docs/e2b-wire.md §2.2): a body
without both keys crashes it with a raw ``KeyError``. So validation errors, unknown routes,
wrong methods and unexpected exceptions all answer in that shape, and nothing ever answers
FastAPI's default ``{"detail": ...}`` or a traceback.

Lifecycle errors carry no status: `FAULTS` gives each its row of the wire's one table
(`sandlot._wire.codes`), whose status the answer carries.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sandlot._wire import codes
from sandlot.lifecycle import errors as lifecycle_errors

__all__ = ["FAULTS", "ApiError", "error_response", "fault_of", "install"]

logger = logging.getLogger("sandlot.server")


FAULTS: dict[type[lifecycle_errors.LifecycleError], codes.Fault] = {
    lifecycle_errors.InvalidRequest: codes.INVALID_ARGUMENT,
    lifecycle_errors.SandboxNotFound: codes.NOT_FOUND,
    lifecycle_errors.TemplateNotFound: codes.NOT_FOUND,
    lifecycle_errors.SnapshotNotFound: codes.NOT_FOUND,
    lifecycle_errors.Conflict: codes.ABORTED,
    lifecycle_errors.Overloaded: codes.RESOURCE_EXHAUSTED,
    lifecycle_errors.RuntimeFailure: codes.INTERNAL,
    lifecycle_errors.NotSupported: codes.UNIMPLEMENTED,
    lifecycle_errors.Unavailable: codes.UNAVAILABLE,
    lifecycle_errors.InsufficientStorage: codes.NO_SPACE,
}
"""Each lifecycle error's row: 400, 404, 409 (a state conflict is Connect's ``aborted``), 429 (the
e2b SDK backs off), 500, 501, 503 (e2b 2.63 retries it as ``ServiceBusyException``), 507."""


def fault_of(exc: lifecycle_errors.LifecycleError) -> codes.Fault:
    """The row a lifecycle error is answered with (the nearest class in `FAULTS`; else internal).

    Example:
        >>> fault_of(lifecycle_errors.Overloaded("queue full")).status
        429
    """
    for cls in type(exc).__mro__:
        if cls in FAULTS:
            return FAULTS[cls]
    return codes.INTERNAL


class ApiError(Exception):
    """An error with its HTTP status, raised by routes and dependencies."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(codes.error_body(status, message), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(lifecycle_errors.LifecycleError)
    async def lifecycle_error(
        _: Request, exc: lifecycle_errors.LifecycleError
    ) -> JSONResponse:
        retry = exc.retry_after
        return error_response(fault_of(exc).status, str(exc), {"Retry-After": str(retry)} if retry else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("server.error %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
