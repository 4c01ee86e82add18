"""Request and response bodies of the control plane, field for field as the e2b SDK sends and
reads them (docs/e2b-wire.md §2.4, §2.5): camelCase keys except ``allow_internet_access`` in
create requests, which the SDK sends in snake_case.

Requests ignore keys they do not know (newer SDKs send more); responses leave out what is
None rather than sending ``null``. Fields marked *sandlot* are extensions an E2B client never
sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandlot.runtime.models import Boot, SandboxState

__all__ = [
    "CLIENT_ID",
    "AutoResume",
    "ConnectRequest",
    "Error",
    "ForkRequest",
    "ForkResult",
    "Health",
    "Lifecycle",
    "ListedSandbox",
    "NetworkConfig",
    "NewSandbox",
    "PauseRequest",
    "PoolHealth",
    "RestartRequest",
    "ResumeRequest",
    "Sandbox",
    "SandboxDetail",
    "SandboxMetric",
    "SnapshotInfo",
    "SnapshotRequest",
    "TimeoutRequest",
    "UnhealthyError",
]

CLIENT_ID = "sandlot"
"""The ``clientID`` every sandbox reports (E2B names the machine that runs it)."""

Seconds = Annotated[int, Field(ge=0, le=2**31 - 1)]
Text = Annotated[str, Field(max_length=4096)]
Labels = Annotated[
    dict[Annotated[str, Field(max_length=256)], Text], Field(max_length=256)
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Response(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Error(_Response):
    code: int
    message: str


class NetworkConfig(_Request):
    allow_out: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, alias="allowOut", max_length=256
    )
    """CIDRs (or addresses) the sandbox may reach even with internet access off."""
    deny_out: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, alias="denyOut", max_length=256
    )
    """CIDRs (or addresses) the sandbox may never reach; ``0.0.0.0/0`` cuts it off."""


class AutoResume(_Request):
    enabled: bool
    """Resume the sandbox, when paused, at its first sandbox-plane request."""


class NewSandbox(_Request):
    template_id: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        "base", alias="templateID"
    )
    timeout: Seconds | None = None
    """Seconds until the sandbox is ended; the server's default (300) when absent."""
    secure: bool = True
    """Require the sandbox's access token on the sandbox plane."""
    allow_internet_access: bool | None = None
    metadata: Labels | None = None
    env_vars: Labels | None = Field(None, alias="envVars")
    auto_pause: bool = Field(False, alias="autoPause")
    """Pause instead of kill when its time is up (or it is idle for ``idleTimeout``)."""
    auto_pause_memory: bool | None = Field(None, alias="autoPauseMemory")
    """Only ``true`` (or absent) is honoured: a pause keeps memory."""
    auto_resume: AutoResume | None = Field(None, alias="autoResume")
    idle_timeout: Seconds | None = Field(None, alias="idleTimeout")
    """*sandlot*: seconds without activity after which the sandbox gets its on-timeout
    action (see docs/lifecycle.md); absent or 0: no idle limit."""
    network: NetworkConfig | None = None
    cpu_count: Annotated[float, Field(ge=0.1, le=1024)] | None = Field(
        None, alias="cpuCount"
    )
    """*sandlot*: CPU cores, at least 0.1 (a sandbox with less would take seconds to boot),
    at most the server's maximum (more is refused with 400)."""
    memory_mb: Annotated[int, Field(ge=16, le=2**31 - 1)] | None = Field(
        None, alias="memoryMB"
    )
    """*sandlot*: memory limit in MiB, at most the server's maximum (more is refused with 400)."""
    disk_size_mb: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = Field(
        None, alias="diskSizeMB"
    )
    """*sandlot*: disk limit in MiB, at most the server's maximum (more is refused with 400)."""


class TimeoutRequest(_Request):
    timeout: Seconds


class ConnectRequest(_Request):
    timeout: Seconds | None = None
    memory: bool | None = None
    """``false`` (the e2b SDK's ``on_resume="reboot"``): a paused sandbox is not restored but
    boots clean on its files (as ``POST /sandboxes/{id}/restart``); a running one is left as
    it is. Absent or ``true``: a paused sandbox is restored with its memory."""


class PauseRequest(_Request):
    memory: bool | None = None
    """Only ``true`` (or absent) is honoured: sandlot always keeps memory (no filesystem-only
    pause yet)."""


class RestartRequest(_Request):
    """*sandlot*: ``POST /sandboxes/{id}/restart``."""

    timeout: Seconds | None = None
    """Seconds the restarted sandbox lives; the server's default (300) when absent."""


class SnapshotRequest(_Request):
    """``POST /sandboxes/{id}/snapshots``."""

    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """Without a name the snapshot gets a new one, ``snap-<random>``; with one, the next tag."""
    memory: bool = True
    """``false``: files only; sandboxes made from it boot clean."""


class ResumeRequest(_Request):
    """E2B's older ``POST /sandboxes/{id}/resume`` body."""

    timeout: Seconds | None = None
    """Seconds the resumed sandbox lives; the server's default (300) when absent."""
    auto_pause: bool | None = Field(None, alias="autoPause")
    """Accepted and ignored: a sandbox keeps the ``autoPause`` it was created with."""
    memory: bool | None = None
    """*sandlot*, as connect's: ``false`` boots the sandbox clean on its files instead."""


class ForkRequest(_Request):
    """``POST /sandboxes/{id}/fork``: 2.45.1 sends both keys, 2.63.0 only those given."""

    count: Annotated[int, Field(ge=1, le=20)] = 1
    timeout: Seconds | None = None
    """Seconds each copy lives; the server's default (300) when absent."""


class _Named(_Response):
    """The keys that start every answer about a sandbox."""

    template_id: str = Field(alias="templateID")
    sandbox_id: str = Field(alias="sandboxID")
    client_id: str = Field(alias="clientID")
    envd_version: str = Field(alias="envdVersion")


class Sandbox(_Named):
    """What create and connect answer."""

    envd_access_token: str | None = Field(None, alias="envdAccessToken")
    domain: str | None = None
    alias: str | None = None


class ForkResult(_Response):
    """One item of the fork answer: ``{"sandbox": ...}`` (or ``{"error": ...}``, which sandlot
    never sends: a fork makes every copy or none)."""

    sandbox: Sandbox | None = None
    error: Error | None = None


class Lifecycle(_Response):
    auto_resume: bool = Field(alias="autoResume")
    on_timeout: Literal["kill", "pause"] = Field(alias="onTimeout")


class ListedSandbox(_Named):
    started_at: datetime = Field(alias="startedAt")
    end_at: datetime = Field(alias="endAt")
    cpu_count: int = Field(alias="cpuCount")
    memory_mb: int = Field(alias="memoryMB")
    disk_size_mb: int = Field(alias="diskSizeMB")
    state: Literal[SandboxState.RUNNING, SandboxState.PAUSED]
    alias: str | None = None
    metadata: dict[str, str] | None = None


class SandboxDetail(ListedSandbox):
    envd_access_token: str | None = Field(None, alias="envdAccessToken")
    domain: str | None = None
    allow_internet_access: bool | None = Field(None, alias="allowInternetAccess")
    network: dict[str, list[str]] | None = None
    lifecycle: Lifecycle | None = None
    boot: Boot | None = None
    """*sandlot*: how its processes started: a fresh boot (create, restart, a filesystem
    snapshot), restored from its own memory (resume) or another's (fork, memory snapshot)."""
    idle_timeout: int | None = Field(None, alias="idleTimeout")
    """*sandlot*: its idle timeout in seconds, when it has one."""


class SnapshotInfo(_Response):
    """A named snapshot (create answers one, ``GET /snapshots`` a list)."""

    snapshot_id: str = Field(alias="snapshotID")
    """``name:vN``: what ``templateID`` takes to start a sandbox from it."""
    names: list[str]
    sandbox_id: str = Field(alias="sandboxID")
    """*sandlot*: the sandbox it was taken of."""
    memory: bool
    """*sandlot*: whether it holds memory (sandboxes go on from its processes)."""
    created_at: datetime = Field(alias="createdAt")
    size_bytes: int = Field(alias="sizeBytes")
    """*sandlot*: what it takes on disk."""


class SandboxMetric(_Response):
    timestamp: datetime
    timestamp_unix: int = Field(alias="timestampUnix")
    cpu_count: int = Field(alias="cpuCount")
    cpu_used_pct: float = Field(alias="cpuUsedPct")
    mem_used: int = Field(alias="memUsed")
    mem_total: int = Field(alias="memTotal")
    mem_cache: int = Field(alias="memCache")
    disk_used: int = Field(alias="diskUsed")
    disk_total: int = Field(alias="diskTotal")


class PoolHealth(_Response):
    """*sandlot*: one warm pool: sandboxes ready, in use and being made, and how big it may get."""

    ready: int
    busy: int
    creating: int
    waiting: int
    target: int
    min_size: int = Field(alias="minSize")
    max_size: int = Field(alias="maxSize")
    healthy: bool
    last_error: str | None = Field(None, alias="lastError")


class Health(_Response):
    """``GET /health``: the status alone without a key; with a team key, the pools and the
    versions too (the details stay with those who hold a key)."""

    status: Literal["ok", "unhealthy"]
    pools: dict[str, PoolHealth] | None = None
    versions: dict[str, str] | None = None
    """*sandlot*: ``sandlot``, ``envd`` (the one reported to SDKs) and ``python``."""


class UnhealthyError(Error, Health):
    """The 503 of ``GET /health``: an error body that still carries the pools' figures."""
