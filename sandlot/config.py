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

__all__ = ["RuntimeSettings", "Settings"]


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
class Settings:
    runtime: RuntimeSettings = RuntimeSettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **runtime: object) -> Settings:
        """Settings from explicit runtime values, then ``SANDLOT_*`` variables, then defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(RuntimeSettings):
            key = f"SANDLOT_{field.name.upper()}"
            if field.name in runtime and runtime[field.name] is not None:
                values[field.name] = runtime[field.name]
            elif key in env:
                values[field.name] = _parse(env[key], field.type, key)
        return cls(runtime=RuntimeSettings(**values))  # type: ignore[arg-type]


def _parse(raw: str, kind: object, key: str) -> object:
    kind = str(kind)
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
