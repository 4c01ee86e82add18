"""The values that cross the runtime boundary.

Everything a driver takes or returns is one of these frozen dataclasses, so the layers above
(lifecycle, api) never see a runc state file, a cgroup path or a netlink message.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

__all__ = [
    "DEFAULT_LIMITS",
    "Boot",
    "ExitStatus",
    "HostFilesystem",
    "Limits",
    "NetworkPolicy",
    "ProcessInfo",
    "ProcessSpec",
    "PtySize",
    "ReconcileReport",
    "SandboxInfo",
    "SandboxSpec",
    "SandboxState",
    "Stats",
]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox. The server clamps them to its own maximums."""

    memory_mb: int = 512
    """Memory, page cache included; past it the kernel OOM-kills inside the sandbox only."""
    cpu_cores: float = 1.0
    """CPU bandwidth as a number of cores (CFS quota / period)."""
    pids: int = 512
    """Tasks (processes and threads) alive at once; a fork bomb stops here."""
    disk_mb: int = 2048
    """Bytes the sandbox may add to its root filesystem; a write past it fails with ENOSPC."""

    def __post_init__(self) -> None:
        for name in ("memory_mb", "pids", "disk_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"limits.{name} must be at least 1, got {getattr(self, name)}")
        if self.memory_mb < 16:
            raise ValueError(f"limits.memory_mb must be at least 16, got {self.memory_mb}")
        if not 0.01 <= self.cpu_cores <= 1024:
            raise ValueError(f"limits.cpu_cores must be between 0.01 and 1024, got {self.cpu_cores}")

    def clamp(self, maximum: Limits) -> Limits:
        """Each limit, lowered to the server-wide maximum where it is above it."""
        return Limits(
            memory_mb=min(self.memory_mb, maximum.memory_mb),
            cpu_cores=min(self.cpu_cores, maximum.cpu_cores),
            pids=min(self.pids, maximum.pids),
            disk_mb=min(self.disk_mb, maximum.disk_mb),
        )


DEFAULT_LIMITS = Limits()


def _networks(values: Sequence[str], field: str) -> tuple[str, ...]:
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise ValueError(f"network.{field}: {value!r} is not an IP address or CIDR") from None
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class NetworkPolicy:
    """Outbound traffic of one sandbox.

    Whatever the policy says, a sandbox never reaches the host's own addresses, another sandbox
    or a link-local (metadata) address. Within that: ``allow`` wins over ``deny``, ``deny`` wins
    over ``internet``. With ``internet`` on, private ranges (RFC 1918, CGNAT) are still refused
    unless allowed, so that a sandbox cannot probe the host's LAN.
    """

    internet: bool = True
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", _networks(self.allow, "allow"))
        object.__setattr__(self, "deny", _networks(self.deny, "deny"))


@dataclasses.dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox is made from."""

    sandbox_id: str
    template: str = "base"
    limits: Limits = DEFAULT_LIMITS
    network: NetworkPolicy = NetworkPolicy()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    hostname: str | None = None
    """Defaults to the sandbox id."""
    runner: bool = False
    """A runner sandbox, made to run one untrusted program after another (``POST /execute``):
    its root filesystem is read-only, the only writable places (``/tmp``, ``/var/tmp``,
    ``/dev/shm`` and the template's working directory) sit on one tmpfs of ``limits.disk_mb``,
    no process can gain privileges (``no_new_privs``: no sudo), and `reset` makes it as new
    again between runs. It cannot be checkpointed or forked."""


class SandboxState(enum.StrEnum):
    """Where a sandbox is in its life, from the runtime up to the API's answers.

    A `str` enum: the store's ``state`` column, JSON bodies and comparisons with plain strings
    see the values themselves (``"running"``...), so moving to it changed no byte anywhere.
    """

    RUNNING = "running"
    PAUSED = "paused"
    """Its processes are checkpointed; it holds no memory and no CPU."""
    STOPPED = "stopped"
    """Its init has exited; only destroy is left to do."""
    KILLED = "killed"
    """Ended: only the store's record of it is left (no driver reports it)."""


class Boot(enum.StrEnum):
    """How a sandbox's current processes started (a `str` enum, as `SandboxState`)."""

    CLEAN = "clean"
    """A fresh boot of its init: create, restart, a filesystem snapshot."""
    RESUME = "resume"
    """Restored from its own checkpoint."""
    FORK = "fork"
    """Restored from another sandbox's memory: fork, a memory snapshot."""


@dataclasses.dataclass(frozen=True)
class SandboxInfo:
    sandbox_id: str
    state: SandboxState
    template: str
    created_at: datetime
    limits: Limits
    network: NetworkPolicy
    metadata: Mapping[str, str]
    address: str
    """The sandbox's IPv4 address on its private link to the host."""
    init_pid: int
    """Host pid of the sandbox's PID 1, 0 when it is not running."""
    checkpoint: Path | None = None
    """The image directory a paused sandbox's processes are checkpointed in (the one given to
    the driver's ``checkpoint``), so that whoever owns that store can tell it from leftovers."""


@dataclasses.dataclass(frozen=True)
class PtySize:
    rows: int = 24
    cols: int = 80

    def __post_init__(self) -> None:
        if not (1 <= self.rows <= 65535 and 1 <= self.cols <= 65535):
            raise ValueError(f"pty size must be 1..65535 rows and cols, got {self.rows}x{self.cols}")


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """A process to start inside a sandbox."""

    argv: Sequence[str]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Added to the sandbox's environment and the user's HOME, USER, LOGNAME, SHELL, PATH."""
    cwd: str | None = None
    """Defaults to the user's home directory."""
    user: str = "user"
    """A user name of the sandbox's /etc/passwd, or a numeric uid."""
    stdin: bool = False
    """Keep stdin open for writing; otherwise it reads as empty."""
    pty: PtySize | None = None
    """Run on a pseudo-terminal of this size; stdout then carries the terminal's output."""
    tag: str = ""
    """A free label that process listings report, for finding the process again."""

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise ValueError("argv must name a program")
        for part in (*self.argv, *self.env, *self.env.values(), self.cwd or "", self.user, self.tag):
            if "\0" in part:
                raise ValueError("argv, env, cwd, user and tag must not contain NUL bytes")


@dataclasses.dataclass(frozen=True)
class ExitStatus:
    """How a process ended: ``exit_code`` when it exited, ``signal`` when a signal killed it."""

    exit_code: int | None
    signal: int | None = None
    max_rss_kb: int | None = dataclasses.field(default=None, compare=False)
    """The peak resident memory of the process and the descendants it waited for, when the
    runtime knows it."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    pid: int
    """The process id inside the sandbox's pid namespace."""
    argv: tuple[str, ...]
    cwd: str
    pty: bool
    tag: str


@dataclasses.dataclass(frozen=True)
class Stats:
    """Point-in-time resource use of one sandbox."""

    cpu_usage_ns: int
    """CPU time used by every task of the sandbox since it started."""
    cpu_cores: float
    memory_bytes: int
    memory_limit_bytes: int
    disk_bytes: int
    disk_limit_bytes: int
    pids: int
    memory_peak_bytes: int = 0
    """The most memory in use at once since the sandbox started or was last `reset`."""
    oom_kills: int = 0
    """Processes the kernel's OOM killer has ended in the sandbox since it started."""


@dataclasses.dataclass(frozen=True)
class HostFilesystem:
    """Where a sandbox's root filesystem is visible on the host, for file operations that do
    not go through a process (resolve every path inside ``root``: never follow a link out)."""

    root: Path
    uid_base: int
    """Host uid (and gid) of uid 0 inside the sandbox: uid ``u`` inside is ``uid_base + u``."""


@dataclasses.dataclass(frozen=True)
class ReconcileReport:
    """What `reconcile` found on the host."""

    kept: tuple[str, ...] = ()
    """Sandboxes the caller knows and the host holds whole."""
    removed: tuple[str, ...] = ()
    """Sandboxes (or their remains) that nobody owns, now gone."""
    missing: tuple[str, ...] = ()
    """Sandboxes the caller knows but the host no longer holds."""
