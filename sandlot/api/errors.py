"""Every error of the control plane as ``{"code": int, "message": str}``.

The e2b SDK parses error bodies before it looks at the status (docs/e2b-wire.md §2.2): a body
without both keys crashes it with a raw ``KeyError``. So validation errors, unknown routes,
wrong methods and unexpected exceptions all answer in that shape, and nothing ever answers
FastAPI's default ``{"detail": ...}`` or a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sandlot.lifecycle import errors as lifecycle_errors

__all__ = ["ApiError", "error_response", "install"]

logger = logging.getLogger("sandlot.server")


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
    return JSONResponse(
        {"code": status, "message": message}, status_code=status, headers=headers
    )


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
        retry = getattr(exc, "retry_after", None)
        return error_response(exc.status, str(exc), {"Retry-After": str(retry)} if retry else None)

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
