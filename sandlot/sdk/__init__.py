"""The sandlot Python SDK, sync and async, speaking the E2B wire protocol to a sandlot server.

Import from the package root (``from sandlot import Sandbox``); the modules below are private.
``_core`` does no I/O, ``_async`` is the hand-written I/O code, ``_sync`` is generated from it.

Example:
    >>> from sandlot import Sandbox
    >>> with Sandbox.create() as sbx:
    ...     print(sbx.commands.run("uname -s").stdout)
    Linux
    >>> import sandlot
    >>> sandlot.execute("print(6 * 7)", language="python").stdout
    '42\\n'
"""

from sandlot.sdk._async.commands import AsyncCommandHandle, AsyncCommands
from sandlot.sdk._async.executor import AsyncExecutor, aexecute
from sandlot.sdk._async.files import AsyncFiles, AsyncFileStream, AsyncWatchHandle
from sandlot.sdk._async.pty import AsyncPty
from sandlot.sdk._async.sandbox import AsyncSandbox
from sandlot.sdk._core.config import ConnectionConfig
from sandlot.sdk._core.models import (
    CommandResult,
    EntryInfo,
    ExecuteResult,
    ExecuteStage,
    FileType,
    Language,
    ProcessInfo,
    PtySize,
    SandboxInfo,
    SandboxLifecycle,
    SandboxMetrics,
    SnapshotInfo,
    StageStatus,
    WatchEvent,
    WatchEventType,
    WriteInfo,
)
from sandlot.sdk._sync.commands import CommandHandle, Commands
from sandlot.sdk._sync.executor import Executor, execute
from sandlot.sdk._sync.files import Files, FileStream, WatchHandle
from sandlot.sdk._sync.pty import Pty
from sandlot.sdk._sync.sandbox import Sandbox
from sandlot.sdk.exceptions import (
    AlreadyExistsError,
    AuthenticationError,
    CommandExitError,
    InvalidArgumentError,
    NotEnoughSpaceError,
    NotFoundError,
    PathNotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    SandlotError,
    ServerError,
    TemplateNotFoundError,
    TimeoutError,
    UnavailableError,
    UnsupportedError,
)

__all__: list[str] = [
    "AlreadyExistsError",
    "AsyncCommandHandle",
    "AsyncCommands",
    "AsyncExecutor",
    "AsyncFileStream",
    "AsyncFiles",
    "AsyncPty",
    "AsyncSandbox",
    "AsyncWatchHandle",
    "AuthenticationError",
    "CommandExitError",
    "CommandHandle",
    "CommandResult",
    "Commands",
    "ConnectionConfig",
    "EntryInfo",
    "ExecuteResult",
    "ExecuteStage",
    "Executor",
    "FileStream",
    "FileType",
    "Files",
    "InvalidArgumentError",
    "Language",
    "NotEnoughSpaceError",
    "NotFoundError",
    "PathNotFoundError",
    "PermissionDeniedError",
    "ProcessInfo",
    "ProtocolError",
    "Pty",
    "PtySize",
    "RateLimitedError",
    "Sandbox",
    "SandboxInfo",
    "SandboxLifecycle",
    "SandboxMetrics",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandlotError",
    "ServerError",
    "SnapshotInfo",
    "StageStatus",
    "TemplateNotFoundError",
    "TimeoutError",
    "UnavailableError",
    "UnsupportedError",
    "WatchEvent",
    "WatchEventType",
    "WatchHandle",
    "WriteInfo",
    "aexecute",
    "execute",
]
