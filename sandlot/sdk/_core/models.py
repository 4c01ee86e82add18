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
    "ExecuteResult",
    "ExecuteStage",
    "FileType",
    "Language",
    "ProcessInfo",
    "PtySize",
    "SandboxInfo",
    "SandboxLifecycle",
    "SandboxMetrics",
    "SnapshotInfo",
    "StageStatus",
    "WatchEvent",
    "WatchEventType",
    "WriteInfo",
]


@dataclasses.dataclass(frozen=True)
class SandboxLifecycle:
    """What the server does with a sandbox when its time runs out, and whether traffic wakes it.

    Attributes:
        auto_resume: A paused sandbox is resumed by its first sandbox-plane request.
        on_timeout: ``"kill"`` or ``"pause"`` (a sandbox created with ``auto_pause=True``).

    Example:
        >>> (await sbx.get_info()).lifecycle
        SandboxLifecycle(auto_resume=True, on_timeout='pause')
    """

    auto_resume: bool
    on_timeout: str


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
        boot: How its current processes started: ``"clean"`` (a fresh boot: create, restart,
            a filesystem snapshot), ``"resume"`` (restored from its own memory) or ``"fork"``
            (restored from another sandbox's memory: a fork or a memory snapshot); None from a
            server that does not say (and in list entries).
        lifecycle: Its timeout action and auto-resume (:class:`SandboxLifecycle`); None in list
            entries.
        idle_timeout: Seconds without activity after which it gets its timeout action; None
            when off.

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
    boot: str | None = None
    lifecycle: SandboxLifecycle | None = None
    idle_timeout: int | None = None


@dataclasses.dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot of a sandbox, which ``create`` takes as a template.

    Attributes:
        snapshot_id: ``name:tag``, what :meth:`~sandlot.Sandbox.create` takes as ``template``
            and :meth:`~sandlot.Sandbox.delete_snapshot` as its id.
        names: Every name the snapshot goes by (``name:tag``).
        sandbox_id: The sandbox it was taken from.
        memory: Whether it holds the processes' memory (a sandbox made from it goes on where
            the source was) or only the files (a sandbox made from it boots clean).
        created_at: When it was taken (None from a server that does not say).
        size_bytes: Disk it takes on the server.

    Example:
        >>> snap = sbx.create_snapshot(name="warm")
        >>> snap.snapshot_id, snap.memory
        ('warm:v1', True)
        >>> Sandbox.create(snap.snapshot_id).get_info().boot
        'fork'
    """

    snapshot_id: str
    names: list[str] = dataclasses.field(default_factory=list)
    sandbox_id: str | None = None
    memory: bool = True
    created_at: datetime.datetime | None = None
    size_bytes: int = 0


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


class StageStatus(enum.StrEnum):
    """How a stage of :func:`~sandlot.execute` ended. A ``str`` enum: ``status == "ok"`` works.

    Example:
        >>> sandlot.execute("while True: pass", language="python", timeout=1).status
        <StageStatus.TIMEOUT: 'timeout'>
    """

    OK = "ok"
    """It ran to its end and exited 0."""
    RUNTIME_ERROR = "runtime_error"
    """It ran to its end with a non-zero exit code, or a signal ended it."""
    COMPILE_ERROR = "compile_error"
    """The compiler refused the program; there is no run stage."""
    TIMEOUT = "timeout"
    """It was stopped at its wall-clock or CPU-time limit."""
    OOM = "oom"
    """It was killed for going over its memory limit."""
    OUTPUT_LIMIT = "output_limit"
    """It was stopped for printing more than the output limit."""


@dataclasses.dataclass(frozen=True)
class ExecuteStage:
    """One stage of a run (compiling, or running) and how it ended.

    Attributes:
        stdout: Standard output (cut at the output limit when ``truncated``).
        stderr: Standard error (likewise).
        exit_code: The exit code; None when a signal (or a limit) ended it.
        signal: The signal that ended it (``"SIGKILL"``), or None.
        status: How it ended (:class:`StageStatus`; a plain ``str`` for a status this SDK
            does not know yet).
        wall_ms: Wall-clock time in milliseconds.
        cpu_ms: CPU time in milliseconds.
        memory_peak_kb: Peak memory in KiB.
        truncated: Whether output was cut at the limit.

    Example:
        >>> result = sandlot.execute("import sys; sys.exit(3)", language="python")
        >>> result.run.exit_code, result.run.status
        (3, <StageStatus.RUNTIME_ERROR: 'runtime_error'>)
    """

    stdout: str
    stderr: str
    exit_code: int | None
    signal: str | None
    status: StageStatus | str
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    memory_peak_kb: int = 0
    truncated: bool = False


@dataclasses.dataclass(frozen=True)
class ExecuteResult:
    """What :func:`~sandlot.execute` answers: the language and version that ran, and each stage.

    Attributes:
        language: The language's name as the server knows it (``"python"``).
        version: Its exact version (``"3.11.2"``).
        compile: The compile stage, for compiled languages only (else None).
        run: The run stage; None when the compile failed.

    The properties read the stage a user cares about: the compile stage when it failed, else
    the run stage.

    Example:
        >>> result = sandlot.execute('print("hi")', language="python")
        >>> result.stdout, result.exit_code, result.ok
        ('hi\\n', 0, True)
        >>> bad = sandlot.execute("fn main() {", language="rust")
        >>> bad.status, bad.run
        (<StageStatus.COMPILE_ERROR: 'compile_error'>, None)
    """

    language: str
    version: str
    compile: ExecuteStage | None
    run: ExecuteStage | None

    @property
    def stage(self) -> ExecuteStage:
        """The stage that decided the outcome: the run, or the compile when there was no run."""
        stage = self.run or self.compile
        if stage is None:  # parse_result refuses an answer with neither
            raise ValueError("an execute result without stages")
        return stage

    @property
    def status(self) -> StageStatus | str:
        """How the run ended (``"compile_error"`` when it never started)."""
        return self.stage.status

    @property
    def ok(self) -> bool:
        """Whether it compiled (if it had to) and ran to exit code 0."""
        return self.status == StageStatus.OK

    @property
    def stdout(self) -> str:
        """The run's standard output; empty when it never ran."""
        return self.run.stdout if self.run else ""

    @property
    def stderr(self) -> str:
        """The run's standard error, or the compiler's messages when the compile failed."""
        return self.stage.stderr

    @property
    def exit_code(self) -> int | None:
        """The run's exit code (or the compiler's, when the compile failed); None after a signal."""
        return self.stage.exit_code


@dataclasses.dataclass(frozen=True)
class Language:
    """A language :func:`~sandlot.execute` can run.

    Attributes:
        language: Its name (what ``language=`` takes).
        version: The version that runs.
        aliases: Other names it answers to (``"py"``, ``"python3"``).
        compiled: Whether a run has a compile stage.

    Example:
        >>> [l.language for l in Executor().languages()]
        ['bash', 'javascript', 'python', 'rust', 'typescript']
    """

    language: str
    version: str
    aliases: list[str] = dataclasses.field(default_factory=list)
    compiled: bool = False
