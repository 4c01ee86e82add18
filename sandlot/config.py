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

__all__ = ["RuntimeSettings", "ServerSettings", "Settings"]


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
    """Server-wide ceilings; a sandbox asking for more gets these."""
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

    def resolved_domain(self) -> str:
        if self.domain:
            return self.domain
        if self.host in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost", ""):
            return f"localhost:{self.port}"
        return f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Settings:
    runtime: RuntimeSettings = RuntimeSettings()
    server: ServerSettings = ServerSettings()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        server: Mapping[str, object] | None = None,
        **runtime: object,
    ) -> Settings:
        """Settings from explicit values (``server`` for the server section, keywords for the
        runtime's), then ``SANDLOT_*`` variables, then defaults."""
        env = os.environ if environ is None else environ
        return cls(
            runtime=_section(RuntimeSettings, runtime, env),  # type: ignore[arg-type]
            server=_section(ServerSettings, server or {}, env),  # type: ignore[arg-type]
        )

    @property
    def state_dir(self) -> Path:
        """Where the server keeps its database and first API key."""
        return self.server.data_dir or self.runtime.data_dir

    @property
    def database_url(self) -> str:
        return self.server.database_url or f"sqlite:///{self.state_dir / 'sandlot.db'}"


def _section(kind: type, given: Mapping[str, object], env: Mapping[str, str]) -> object:
    values: dict[str, object] = {}
    for field in dataclasses.fields(kind):
        key = field.metadata.get("env", f"SANDLOT_{field.name.upper()}")
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
        if kind == "str":
            return raw
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a valid {kind}") from None
    raise ValueError(f"{key} cannot be set from the environment")
