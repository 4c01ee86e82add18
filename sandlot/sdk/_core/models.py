"""The typed results of the SDK: what a call returns, parsed from the wire into dataclasses.

They are frozen: a result describes the sandbox at the moment of the answer, and changing it
would change nothing in the sandbox.

Example:
    >>> info = sbx.get_info()
    >>> info.state, info.metadata
    ('running', {'job': '42'})
"""

from __future__ import annotations

import dataclasses
import datetime
import enum

__all__ = [
    "CommandResult",
    "EntryInfo",
    "FileType",
    "ProcessInfo",
    "PtySize",
    "SandboxInfo",
    "SandboxMetrics",
    "WatchEvent",
    "WatchEventType",
    "WriteInfo",
]


@dataclasses.dataclass(frozen=True)
class SandboxInfo:
    """A sandbox as the control plane describes it.

    Attributes:
        sandbox_id: Its id.
        template_id: The template it was created from.
        state: ``"running"`` or ``"paused"``.
        started_at: When it started.
        end_at: When its timeout ends it, unless extended.
        metadata: The metadata given at creation.
        cpu_count: vCPUs it may use.
        memory_mb: Memory limit in MiB.
        disk_size_mb: Disk size in MiB.
        envd_version: The sandbox-plane protocol version the server reports.
        name: The template alias, if any.

    Example:
        >>> for info in Sandbox.list(metadata={"job": "42"}):
        ...     print(info.sandbox_id, info.end_at - info.started_at)
    """

    sandbox_id: str
    template_id: str
    state: str
    started_at: datetime.datetime
    end_at: datetime.datetime
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    cpu_count: int = 0
    memory_mb: int = 0
    disk_size_mb: int = 0
    envd_version: str = ""
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class SandboxMetrics:
    """One sample of a sandbox's resource use.

    Example:
        >>> m = sbx.get_metrics()[-1]
        >>> f"{m.mem_used / m.mem_total:.0%} memory, {m.cpu_used_pct:.1f}% CPU"
        '3% memory, 0.4% CPU'
    """

    timestamp: datetime.datetime
    cpu_count: int
    cpu_used_pct: float
    mem_used: int
    mem_total: int
    disk_used: int
    disk_total: int
    mem_cache: int = 0


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """How a command ended and everything it printed.

    Attributes:
        stdout: Standard output, decoded as UTF-8 (invalid bytes become U+FFFD).
        stderr: Standard error, decoded the same way.
        exit_code: The exit code; ``-1`` when a signal ended the command.
        error: The server's explanation when the command could not run at all.

    Example:
        >>> sbx.commands.run("echo hi").stdout
        'hi\\n'
    """

    stdout: str
    stderr: str
    exit_code: int
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """A process running in the sandbox, as ``commands.list()`` reports it.

    Example:
        >>> [p.pid for p in sbx.commands.list() if p.tag == "server"]
        [312]
    """

    pid: int
    cmd: str
    args: list[str]
    envs: dict[str, str]
    cwd: str | None = None
    tag: str | None = None


@dataclasses.dataclass(frozen=True)
class PtySize:
    """A terminal size in character cells.

    Example:
        >>> sbx.pty.create(PtySize(cols=120, rows=40))
    """

    cols: int = 80
    rows: int = 24


class FileType(enum.Enum):
    """What a filesystem entry is.

    Example:
        >>> sbx.files.get_info("/tmp").type
        <FileType.DIR: 'dir'>
    """

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    """A file, directory or symlink in the sandbox.

    Attributes:
        name: The base name.
        path: The absolute path.
        type: What it is; for a symlink, :attr:`FileType.SYMLINK`.
        size: Size in bytes.
        mode: Permission bits.
        permissions: ``ls``-style permissions, e.g. ``-rw-r--r--``.
        owner: Owner's user name.
        group: Group name.
        modified_time: Last modification.
        symlink_target: Where a symlink points.
        metadata: Metadata given when the file was uploaded.

    Example:
        >>> [e.name for e in sbx.files.list("/home/user") if e.type is FileType.FILE]
        ['.bashrc', '.profile']
    """

    name: str
    path: str
    type: FileType | None
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    modified_time: datetime.datetime | None = None
    symlink_target: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class WriteInfo:
    """A file written by ``files.write``, ``write_many`` or ``upload``.

    Example:
        >>> sbx.files.write("notes.txt", "hi").path
        '/home/user/notes.txt'
    """

    name: str
    path: str
    type: FileType | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


class WatchEventType(enum.Enum):
    """What happened to a watched path.

    Example:
        >>> event.type is WatchEventType.CREATE
        True
    """

    CREATE = "create"
    WRITE = "write"
    REMOVE = "remove"
    RENAME = "rename"
    CHMOD = "chmod"


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One change in a watched directory.

    Attributes:
        name: The path relative to the watched directory.
        type: What happened.
        entry: The entry after the change, when the watch asked for it.

    Example:
        >>> with sbx.files.watch("/tmp", timeout=5) as watch:
        ...     sbx.files.write("/tmp/a", "x")
        ...     next(iter(watch))
        WatchEvent(name='a', type=<WatchEventType.CREATE: 'create'>, entry=None)
    """

    name: str
    type: WatchEventType
    entry: EntryInfo | None = None
