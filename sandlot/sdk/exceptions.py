"""Every error the sandlot SDK raises.

Catch :class:`SandlotError` to catch them all. The tree::

    * SandlotError                  anything the SDK raises on purpose
      + AuthenticationError         401 / unauthenticated: missing, wrong or revoked key or token
      + PermissionDeniedError       403 / permission_denied
      + NotFoundError               404 / not_found
        - SandboxNotFoundError      the control plane does not know that sandbox
        - TemplateNotFoundError     create names no template, and no snapshot, of that name
        - PathNotFoundError         no such file or directory in the sandbox
      + AlreadyExistsError          409 / already_exists
      + InvalidArgumentError        400, 422 / invalid_argument, failed_precondition, out_of_range
      + RateLimitedError            429 / resource_exhausted (``retry_after`` in seconds, if sent)
      + NotEnoughSpaceError         507: the sandbox's disk is full
      + TimeoutError                deadline_exceeded, canceled, or a client-side timeout
      + SandboxNotRunningError      the sandbox was killed, paused or has expired (502)
      + UnavailableError            503 / unavailable, or the server cannot be reached at all
      + UnsupportedError            501 / unimplemented
      + ServerError                 500 and anything else the server reports
      + ProtocolError               the server answered something the SDK cannot read
      + CommandExitError            a command exited with a non-zero code (stdout, stderr, exit_code)

The same names serve both directions: ``sandlot.sdk._core.errors`` holds the one table that turns
an HTTP status or a Connect code into one of these classes, and a class back into its code.

``TimeoutError`` also derives from the built-in :class:`TimeoutError`, so ``except TimeoutError``
catches it whether or not the name was imported from here.

Example:
    >>> from sandlot import Sandbox, SandlotError
    >>> from sandlot.sdk.exceptions import CommandExitError
    >>> with Sandbox.create() as sbx:
    ...     try:
    ...         sbx.commands.run("exit 3")
    ...     except CommandExitError as exc:
    ...         print(exc.exit_code)
    3
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandlot.sdk._core.models import CommandResult

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "CommandExitError",
    "InvalidArgumentError",
    "NotEnoughSpaceError",
    "NotFoundError",
    "PathNotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitedError",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandlotError",
    "ServerError",
    "TemplateNotFoundError",
    "TimeoutError",
    "UnavailableError",
    "UnsupportedError",
]


class SandlotError(Exception):
    """The root of every error the SDK raises: catch this to catch them all.

    Attributes:
        message: What went wrong, as the server or the SDK put it.
        status: The HTTP status of the answer that caused it, if there was one.
        code: The Connect code of the answer (``"not_found"``...), if there was one.

    Example:
        >>> try:
        ...     Sandbox.connect("no-such-sandbox")
        ... except SandlotError as exc:
        ...     print(type(exc).__name__, exc.status)
        SandboxNotFoundError 404
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class AuthenticationError(SandlotError):
    """The API key or the sandbox access token is missing, wrong or revoked.

    Example:
        >>> Sandbox.create(api_key="e2b_00")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.AuthenticationError: 401: invalid API key
    """


class PermissionDeniedError(SandlotError):
    """The credential is valid but does not allow this operation.

    Example:
        >>> sbx.files.write("/etc/shadow", "x")  # as the default user
        Traceback (most recent call last):
        sandlot.sdk.exceptions.PermissionDeniedError: ...
    """


class NotFoundError(SandlotError):
    """The thing asked about does not exist.

    Example:
        >>> sbx.commands.kill(999999)  # returns False instead of raising
        False
    """


class SandboxNotFoundError(NotFoundError):
    """The control plane knows no sandbox with this id (in this team).

    Example:
        >>> Sandbox.get_info("nope")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.SandboxNotFoundError: 404: sandbox nope not found
    """


class TemplateNotFoundError(NotFoundError):
    """``create`` named a template that is not built, or a snapshot that does not exist (any more).

    Example:
        >>> Sandbox.create("deleted-snapshot:v1")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.TemplateNotFoundError: 404: snapshot deleted-snapshot:v1 not found
    """


class PathNotFoundError(NotFoundError):
    """No such file or directory inside the sandbox.

    Example:
        >>> sbx.files.read("/nope")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.PathNotFoundError: ...
    """


class AlreadyExistsError(SandlotError):
    """The thing to create is already there, or the operation conflicts with the current state.

    Example:
        >>> sbx.files.make_dir("/tmp")  # returns False instead of raising
        False
    """


class InvalidArgumentError(SandlotError):
    """The request was refused as malformed or impossible (a bad path, a directory read as a file).

    Example:
        >>> sbx.files.read("/tmp")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.InvalidArgumentError: ...
    """


class RateLimitedError(SandlotError):
    """Too many requests or sandboxes; wait ``retry_after`` seconds (if known) and try again.

    Example:
        >>> try:
        ...     Sandbox.create()
        ... except RateLimitedError as exc:
        ...     time.sleep(exc.retry_after or 1)
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class NotEnoughSpaceError(SandlotError):
    """The sandbox's disk is full.

    Example:
        >>> sbx.files.write("/tmp/big", huge_file)
        Traceback (most recent call last):
        sandlot.sdk.exceptions.NotEnoughSpaceError: ...
    """


class TimeoutError(SandlotError, builtins.TimeoutError):  # shadows the builtin on purpose, and derives from it
    """An operation ran past its deadline: a command's ``timeout``, a request timeout, a watch.

    Example:
        >>> sbx.commands.run("sleep 10", timeout=1)
        Traceback (most recent call last):
        sandlot.sdk.exceptions.TimeoutError: ...
    """


class SandboxNotRunningError(SandlotError):
    """The sandbox was killed, paused or has expired, so its processes and files are out of reach.

    Example:
        >>> sbx.kill()
        >>> sbx.commands.run("true")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.SandboxNotRunningError: The sandbox was not found
    """


class UnavailableError(SandlotError):
    """The server is busy, restarting, or cannot be reached at all.

    Example:
        >>> Sandbox.create(api_url="http://127.0.0.1:1")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.UnavailableError: cannot reach http://127.0.0.1:1: ...
    """


class UnsupportedError(SandlotError):
    """The server does not implement this operation (yet).

    Example:
        >>> sbx.pause()  # on a server without checkpointing
        Traceback (most recent call last):
        sandlot.sdk.exceptions.UnsupportedError: ...
    """


class ServerError(SandlotError):
    """The server failed in a way the SDK has no better name for (500 and unknown codes).

    Example:
        >>> except ServerError as exc:
        ...     log.error("sandlot failed: %s (status %s)", exc.message, exc.status)
    """


class ProtocolError(SandlotError):
    """The server answered something this SDK cannot read: a bad envelope, a missing event.

    Example:
        >>> except ProtocolError:
        ...     pass  # usually a version mismatch between SDK and server
    """


class CommandExitError(SandlotError):
    """A command ended with a non-zero exit code; its whole output is attached.

    Attributes:
        stdout: Everything the command wrote to standard output.
        stderr: Everything the command wrote to standard error.
        exit_code: The command's exit code (``-1`` when a signal ended it).
        error: The server's explanation when the command could not run at all.

    Example:
        >>> try:
        ...     sbx.commands.run("echo oops >&2; exit 2")
        ... except CommandExitError as exc:
        ...     print(exc.exit_code, exc.stderr)
        2 oops
    """

    def __init__(self, result: CommandResult) -> None:
        message = f"command exited with code {result.exit_code}"
        if result.error:
            message += f": {result.error}"
        elif result.stderr:
            message += f": {result.stderr.strip()[-500:]}"
        super().__init__(message)
        self.result = result
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exit_code = result.exit_code
        self.error = result.error
