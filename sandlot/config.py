"""Settings, grouped by the component that reads them.

Values come from explicit arguments first, then ``SANDLOT_*`` environment variables, then the
defaults written here. The environment is a parameter (`Settings.from_env(environ=...)`) so that
tests can hand in their own.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from sandlot.runtime import models

__all__ = ["AdmissionSettings", "ExecuteSettings", "RuntimeSettings", "ServerSettings", "Settings"]


@dataclasses.dataclass(frozen=True)
class RuntimeSettings:
    data_dir: Path = Path("/var/lib/sandlot")
    """Sandbox state: bundles, upper layers, the disk pool. Lost with the sandboxes."""
    cache_dir: Path = Path("/var/cache/sandlot")
    """What is slow to build and safe to keep: template root filesystems, CRIU, the init binary."""
    instance: str = "sandlot"
    """Names this daemon's host objects (nftables table, cgroup parent, netns and veth prefixes),
    so that two daemons on one host, or a test run beside a server, never touch each other's."""
    default_limits: models.Limits = models.Limits()
    max_limits: models.Limits = models.Limits(memory_mb=8192, cpu_cores=2.0, pids=4096, disk_mb=20480)
    """Per-sandbox ceilings; a create asking for more is refused (400 naming the cap)."""
    internet_default: bool = True
    """Whether a sandbox that does not say gets outbound internet (E2B: on)."""
    subnet: str = "10.211.0.0/16"
    """Carved into one /30 per sandbox: host end .1, sandbox end .2."""
    disk_pool_gb: int = 256
    """Size of the sparse XFS image that holds every sandbox's writable layer; only what
    sandboxes write takes real disk."""
    spares: int = 4
    """Default-size disk images kept ready for the next sandboxes, so that a create only has
    to rename one. 0 makes every disk on demand."""
    userns: bool = True
    """Run sandboxes in a user namespace: root inside is uid `userns_base` on the host."""
    userns_base: int = 100000
    """First host uid of the 65536 that sandboxes' uids 0..65535 map to; templates are built
    owned by this range."""
    criu_timeout: float = 120.0
    """Seconds a checkpoint or restore may take before CRIU is killed and the operation fails
    (the sandbox stays as it was: running, or paused on its checkpoint)."""
    conntrack_limit: int = 4096
    """Connections one sandbox may have tracked through the host at once (``ct count``); new
    ones beyond it are dropped, so no sandbox can fill the host's conntrack table."""

    @property
    def templates_dir(self) -> Path:
        return self.cache_dir / "templates"


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """The HTTP server (`sandlot serve`): where it listens, what it tells clients, its store.

    Read from ``SANDLOT_HOST``, ``SANDLOT_PORT``, ``SANDLOT_DOMAIN``, ``SANDLOT_SERVER_DATA_DIR``,
    ``SANDLOT_DATABASE_URL``, ``SANDLOT_DEFAULT_TIMEOUT``, ``SANDLOT_MAX_TIMEOUT``, ``SANDLOT_DRIVER``.
    """

    host: str = "127.0.0.1"
    port: int = 3000
    domain: str | None = None
    """What create and connect responses report as ``domain``: the e2b SDK builds sandbox URLs
    (``https://49983-<id>.<domain>``) from it. Defaults to ``localhost:<port>`` on a loopback or
    wildcard host, else ``<host>:<port>``; never one of E2B's own domains, so that an SDK left
    without ``E2B_SANDBOX_URL`` never sends a sandbox's token to E2B."""
    data_dir: Path | None = dataclasses.field(default=None, metadata={"env": "SANDLOT_SERVER_DATA_DIR"})
    """Where the database and the first API key live; defaults to the runtime's data_dir."""
    database_url: str | None = None
    """An SQLAlchemy URL; defaults to SQLite at ``<data_dir>/sandlot.db`` (WAL mode)."""
    default_timeout: int = 300
    """Seconds a sandbox lives when its creator does not say (E2B: 300)."""
    max_timeout: int = 86400
    """The longest lifetime a create, connect or set_timeout may ask for; longer asks get this."""
    driver: str = "runc"
    """The runtime driver, by its name in the ``sandlot.runtime_drivers`` entry points."""
    pool_min: int = 1
    """Sandboxes of the ``base`` template with the default limits kept made ahead of time, so
    that ``POST /sandboxes`` hands one out instead of making it (0: no pool)."""
    pool_max: int = 4
    """The most such sandboxes the pool grows to when creates come faster than it refills."""

    def resolved_domain(self) -> str:
        if self.domain:
            return self.domain
        if self.host in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost", ""):
            return f"localhost:{self.port}"
        return f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class ExecuteSettings:
    """``POST /execute``: its warm pools of runner sandboxes, its queue and its ceilings.

    Read from ``SANDLOT_EXECUTE_<FIELD>`` (``SANDLOT_EXECUTE_POOL_MAX=16``).
    """

    pool_min: int = 2
    """Runner sandboxes kept ready per template, whatever the load."""
    pool_max: int = 8
    """The most runner sandboxes per template: also the most runs at once."""
    queue: int = 64
    """Runs that may wait for a runner sandbox; one more is answered 429 with Retry-After."""
    queue_timeout: float = 30.0
    """Seconds a run may wait for a runner sandbox before it is answered 503."""
    reuse: bool = True
    """Reset a runner sandbox after a run and give it to the next one (1-3 ms), instead of
    destroying it and making a fresh one (~55 ms of CPU, which caps throughput)."""
    memory_mb: int = 512
    """A run's memory limit when the request sets none (at most the runtime's maximum)."""
    timeout_max: float = 60.0
    """The longest wall-clock ``timeout`` a run may ask for."""
    output_limit_max: int = 8 << 20
    """The largest ``output_limit`` (bytes of stdout and stderr together) a run may ask for."""
    languages_dir: Path | None = None
    """A directory of extra language files (``NAME.toml``), searched before the built-in ones."""


@dataclasses.dataclass(frozen=True)
class AdmissionSettings:
    """What the server admits, so that no team can fill the host (`sandlot.lifecycle.admission`).

    Read from ``SANDLOT_<FIELD>`` (``SANDLOT_DISK_FREE_FLOOR_MB=8192``). The defaults keep a
    2-core, 24 GiB host safe.
    """

    disk_free_floor_mb: int = 4096
    """Free space the data filesystem keeps: a create, resume, pause, snapshot or fork that would
    leave less (counting the unwritten part of every running sandbox's disk as taken) gets 507."""
    memory_overcommit: float = 1.0
    """The memory limits of running sandboxes together stay within this times the host's
    memory; a create, resume or fork past it gets 503 with Retry-After."""
    retention_days: float = 30.0
    """Pause checkpoints and snapshots older than this are removed (the paused sandbox is
    ended), as E2B keeps paused sandboxes 30 days."""
    team_storage_quota_mb: int = 20480
    """Disk one team's pause checkpoints and snapshots may take together; a pause or snapshot
    that would go past it gets 507."""
    proxy_connections: int = 64
    """Requests proxied to one sandbox's ports at once; one more gets 429 with Retry-After."""
    proxy_read_timeout: float = 60.0
    """Seconds a sandbox's port may stay silent while the proxy waits for its answer (504 before
    the answer starts; the answer is cut after)."""
    proxy_idle_timeout: float = 60.0
    """Seconds a client may leave a proxied request without a byte of its body, or without
    reading the answer, before the proxy drops it."""

    def __post_init__(self) -> None:
        for name in (
            "memory_overcommit", "retention_days", "proxy_connections", "proxy_read_timeout", "proxy_idle_timeout"
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"SANDLOT_{name.upper()} must be more than 0, got {getattr(self, name)}")
        for name in ("disk_free_floor_mb", "team_storage_quota_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"SANDLOT_{name.upper()} must be 0 or more, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class Settings:
    runtime: RuntimeSettings = RuntimeSettings()
    server: ServerSettings = ServerSettings()
    execute: ExecuteSettings = ExecuteSettings()
    admission: AdmissionSettings = AdmissionSettings()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        server: Mapping[str, object] | None = None,
        execute: Mapping[str, object] | None = None,
        admission: Mapping[str, object] | None = None,
        **runtime: object,
    ) -> Settings:
        """Settings from explicit values (``server``, ``execute`` and ``admission`` for those
        sections, keywords for the runtime's), then ``SANDLOT_*`` variables, then defaults."""
        env = os.environ if environ is None else environ
        return cls(
            runtime=_section(RuntimeSettings, runtime, env),  # type: ignore[arg-type]
            server=_section(ServerSettings, server or {}, env),  # type: ignore[arg-type]
            execute=_section(ExecuteSettings, execute or {}, env, prefix="SANDLOT_EXECUTE_"),  # type: ignore[arg-type]
            admission=_section(AdmissionSettings, admission or {}, env),  # type: ignore[arg-type]
        )

    @property
    def state_dir(self) -> Path:
        """Where the server keeps its database and first API key."""
        return self.server.data_dir or self.runtime.data_dir

    @property
    def database_url(self) -> str:
        return self.server.database_url or f"sqlite:///{self.state_dir / 'sandlot.db'}"


def _section(kind: type, given: Mapping[str, object], env: Mapping[str, str], prefix: str = "SANDLOT_") -> object:
    values: dict[str, object] = {}
    for field in dataclasses.fields(kind):
        key = field.metadata.get("env", f"{prefix}{field.name.upper()}")
        if field.name in given and given[field.name] is not None:
            values[field.name] = given[field.name]
        elif key in env:
            values[field.name] = _parse(env[key], field.type, key)
    return kind(**values)


def _parse(raw: str, kind: object, key: str) -> object:
    kind = str(kind).removesuffix(" | None")
    try:
        if "Path" in kind:
            return Path(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "str":
            return raw
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a valid {kind}") from None
    raise ValueError(f"{key} cannot be set from the environment")
