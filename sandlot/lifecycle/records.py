"""What the control plane holds of each live sandbox (`LiveSandbox`), and its rows in the store.

Every live sandbox (running or paused) is held in memory, loaded from the store at start and
written through on every change (`Records`): reads never touch the database, which keeps the
control plane's hot path to a dict lookup.

A `LiveSandbox` is a row of ``sandboxes`` field for field. One mapping, driven by the
dataclass's fields, serves both directions: a field is stored in the column of its own name
unless its ``metadata`` names another (``column``), is sealed with the vault (``sealed``), or
is not stored at all (``column: None``).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sandlot.runtime import models
from sandlot.store import db
from sandlot.store import models as store
from sandlot.store.vault import Vault

__all__ = ["LiveSandbox", "Records", "new_sandbox_id", "now"]

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_sandbox_id() -> str:
    """20 lowercase letters and digits, like E2B's ids (a letter first)."""
    return secrets.choice(_ID_ALPHABET[:26]) + "".join(
        secrets.choice(_ID_ALPHABET) for _ in range(19)
    )


def now() -> datetime:
    return datetime.now(UTC)


def _sealed(column: str) -> dict[str, Any]:
    return {"column": column, "sealed": True}


_NOT_STORED: dict[str, Any] = {"column": None}


@dataclasses.dataclass
class LiveSandbox:
    """What the control plane knows of one live sandbox (a row of ``sandboxes``)."""

    id: str
    team_id: str
    template: str
    alias: str | None
    metadata: dict[str, str] = dataclasses.field(metadata={"column": "metadata_"})
    env_vars: dict[str, str] = dataclasses.field(metadata=_sealed("env_vars_sealed"))
    started_at: datetime
    end_at: datetime
    state: models.SandboxState
    access_token: str | None = dataclasses.field(metadata=_sealed("access_token_sealed"))
    secure: bool
    auto_pause: bool
    cpu_count: float
    memory_mb: int
    disk_mb: int
    pids: int
    allow_internet: bool
    network: dict[str, Any]
    auto_resume: bool
    timeout: int
    """Seconds of life it was made with; an auto-resume gives it that long again."""
    idle_timeout: int | None
    boot: models.Boot
    """How its current processes started."""
    last_active: float = dataclasses.field(
        default_factory=time.monotonic, compare=False, metadata=_NOT_STORED
    )
    """`time.monotonic` of its last activity (not stored: a restart counts as activity)."""
    busy: bool = dataclasses.field(default=False, compare=False, metadata=_NOT_STORED)
    """A command started through the API was running at the last idle check."""
    paused_at: datetime | None = dataclasses.field(default=None, compare=False, metadata=_NOT_STORED)
    """When its checkpoint was made, while paused (not stored: at start, the checkpoint's
    time); it is ended once that is older than the retention."""

    def __post_init__(self) -> None:
        # Rows hold the plain strings; the dicts are copied so that no two sandboxes (a fork
        # and its parent, a row and its sandbox) share one.
        self.state = models.SandboxState(self.state)
        self.boot = models.Boot(self.boot)
        self.metadata, self.env_vars, self.network = dict(self.metadata), dict(self.env_vars), dict(self.network)

    def touch(self) -> None:
        """Record activity now (for the idle timeout)."""
        self.last_active = time.monotonic()

    def running_again(self, boot: models.Boot, seconds: int) -> None:
        """After a resume or restart: running, booted so, ending ``seconds`` from now."""
        self.state, self.boot, self.busy, self.paused_at = models.SandboxState.RUNNING, boot, False, None
        self.end_at = now() + timedelta(seconds=seconds)
        self.touch()

    def spec(self) -> models.SandboxSpec:
        """What the runtime makes it from."""
        return models.SandboxSpec(
            sandbox_id=self.id,
            template=self.template,
            limits=models.Limits(
                memory_mb=self.memory_mb, cpu_cores=self.cpu_count, pids=self.pids, disk_mb=self.disk_mb
            ),
            network=models.NetworkPolicy(
                internet=self.allow_internet,
                allow=tuple(self.network.get("allowOut", ())),
                deny=tuple(self.network.get("denyOut", ())),
            ),
            env=self.env_vars,
            metadata=self.metadata,
        )

    @classmethod
    def from_record(cls, row: store.SandboxRecord, vault: Vault) -> LiveSandbox:
        """The sandbox of a row, its secrets opened with ``vault``."""
        return cls(**_copy(row, row.id, vault.unseal, to_row=False))

    def to_record(self, vault: Vault) -> store.SandboxRecord:
        """Its row, its secrets sealed with ``vault``."""
        return store.SandboxRecord(**_copy(self, self.id, vault.seal, to_row=True))


_STORED = [
    (f.name, f.metadata.get("column", f.name), f.metadata.get("sealed", False))
    for f in dataclasses.fields(LiveSandbox)
    if f.metadata.get("column", f.name) is not None
]
"""(field, column, sealed) of every stored field of `LiveSandbox`."""


def _copy(source: object, sandbox_id: str, crypt: Callable[..., Any], *, to_row: bool) -> dict[str, Any]:
    """The stored values of a sandbox or its row, by column name (``to_row``) or field name,
    the secrets passed through ``crypt`` (the vault's seal or unseal)."""
    values = {}
    for field, column, sealed in _STORED:
        source_name, name = (field, column) if to_row else (column, field)
        value = getattr(source, source_name)
        if sealed and value is not None:
            value = crypt(value, row=f"sandboxes/{sandbox_id}/{field}")
        values[name] = value
    return values


class Records:
    """The store's side of the live sandboxes: every call is one short transaction (run them
    in a thread: they block)."""

    def __init__(self, database: db.Database, vault: Vault) -> None:
        self.database = database
        self.vault = vault

    def load_live(self) -> list[LiveSandbox]:
        with self.database.session() as session:
            rows = session.scalars(
                sa.select(store.SandboxRecord).where(
                    store.SandboxRecord.state != models.SandboxState.KILLED
                )
            )
            return [LiveSandbox.from_record(r, self.vault) for r in rows]

    def insert(self, sandboxes: Iterable[LiveSandbox]) -> None:
        with self.database.session() as session:
            session.add_all([s.to_record(self.vault) for s in sandboxes])

    def save_state(self, sbx: LiveSandbox) -> None:
        """Its state, end time and boot."""
        self._update([sbx.id], state=sbx.state, end_at=sbx.end_at, boot=sbx.boot)

    def save_end(self, sbx: LiveSandbox) -> None:
        self._update([sbx.id], end_at=sbx.end_at)

    def mark_killed(self, ids: Collection[str]) -> None:
        self._update(ids, state=models.SandboxState.KILLED, ended_at=now())

    def _update(self, ids: Collection[str], **values: Any) -> None:
        with self.database.session() as session:
            session.execute(
                sa.update(store.SandboxRecord)
                .where(store.SandboxRecord.id.in_(list(ids)))
                .values(**values)
            )
