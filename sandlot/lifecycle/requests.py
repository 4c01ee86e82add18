"""Checks and defaults for what a client asks of the lifecycle: a new sandbox's environment,
limits and network policy, timeouts, snapshot names and fork counts.

Each check raises `errors.InvalidRequest` with a message that names the field as the client
sent it (``envVars``, ``templateID``...), so that bad input gets a clear 400 before anything
is made.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sandlot.config import RuntimeSettings, ServerSettings
from sandlot.lifecycle import errors, snapshots
from sandlot.runtime import models
from sandlot.store import models as store

__all__ = [
    "check_fork_count",
    "check_idle_timeout",
    "check_snapshot_name",
    "check_template_name",
    "environment",
    "limits",
    "network",
    "timeout",
]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_FORKS = 20


def timeout(server: ServerSettings, seconds: int | None) -> int:
    """Seconds of life: the server's default when absent, lowered to its maximum."""
    if seconds is None:
        seconds = server.default_timeout
    if seconds < 0:
        raise errors.InvalidRequest(f"timeout must be 0 or more seconds, got {seconds}")
    return min(seconds, server.max_timeout)


def check_idle_timeout(seconds: int | None) -> None:
    if seconds is not None and seconds < 0:
        raise errors.InvalidRequest(f"idleTimeout must be 0 or more seconds, got {seconds}")


def environment(env_vars: Mapping[str, str] | None, metadata: Mapping[str, str] | None) -> dict[str, str]:
    """``env_vars`` as a new dict, once its names and every key and value of it and of
    ``metadata`` can go into a process's environment and the store."""
    env = dict(env_vars or {})
    for name in env:
        if not _ENV_NAME.match(name):
            raise errors.InvalidRequest(f"envVars: {name!r} is not a valid environment variable name")
    for key, value in (*env.items(), *(metadata or {}).items()):
        if "\0" in key or "\0" in value:
            raise errors.InvalidRequest("envVars and metadata must not contain NUL characters")
    return env


def limits(
    rt: RuntimeSettings,
    source: store.SnapshotRecord | None,
    *,
    cpu_count: float | None,
    memory_mb: int | None,
    disk_mb: int | None,
) -> models.Limits:
    """A new sandbox's limits: the snapshot's it is made from, or those asked, or the server's
    defaults (the caller checks them against the maximums: `admission.check_limits`)."""
    if source is not None:
        if (cpu_count, memory_mb, disk_mb) != (None, None, None):
            raise errors.InvalidRequest(
                "a sandbox made from a snapshot has the snapshot's cpuCount, memoryMB and "
                "diskSizeMB: leave them out"
            )
        cpu_count, memory_mb, disk_mb = source.cpu_count, source.memory_mb, source.disk_mb
    defaults = rt.default_limits.clamp(rt.max_limits)
    try:
        return models.Limits(
            memory_mb=memory_mb if memory_mb is not None else defaults.memory_mb,
            cpu_cores=cpu_count if cpu_count is not None else defaults.cpu_cores,
            pids=source.pids if source is not None else defaults.pids,
            disk_mb=disk_mb if disk_mb is not None else defaults.disk_mb,
        )
    except ValueError as exc:
        raise errors.InvalidRequest(str(exc)) from None


def network(
    rt: RuntimeSettings, *, internet: bool | None, allow_out: Iterable[str], deny_out: Iterable[str]
) -> models.NetworkPolicy:
    """A new sandbox's network policy (internet access the server's default when absent)."""
    try:
        return models.NetworkPolicy(
            internet=rt.internet_default if internet is None else internet,
            allow=tuple(allow_out),
            deny=tuple(deny_out),
        )
    except ValueError as exc:
        raise errors.InvalidRequest(str(exc)) from None


def check_template_name(template: str) -> None:
    """A ``templateID`` without a version names a template or a snapshot: either is a name."""
    if not snapshots.NAME.match(template):
        raise errors.InvalidRequest(
            f"templateID {template!r}: use 1-63 of a-z, 0-9, '.', '_' and '-' "
            "(and ':vN' for a snapshot's version)"
        )


def check_snapshot_name(name: str) -> None:
    if not snapshots.NAME.match(name):
        raise errors.InvalidRequest(
            f"name {name!r}: use 1-63 of a-z, 0-9, '.', '_' and '-', starting with a "
            "letter or digit"
        )


def check_fork_count(count: int) -> None:
    if not 1 <= count <= MAX_FORKS:
        raise errors.InvalidRequest(f"count must be between 1 and {MAX_FORKS}, got {count}")
