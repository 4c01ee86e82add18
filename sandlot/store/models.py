"""The tables: teams, their API keys, their sandboxes, their snapshots.

API keys are stored as the sha256 of the key (a key is 160 random bits: a fast hash is enough,
and it lets a request be authenticated by one indexed lookup) with a short display prefix.
Sandbox rows stay after the sandbox ends (state ``killed``) as a record of what ran; lists and
lookups only ever show live ones. Snapshot rows stay after a delete too (``deleted_at`` set), so
that a tag, once given, never names a second snapshot.

Secrets are stored sealed (`sandlot.store.vault`): a sandbox's access token and environment,
a snapshot's environment. Times are stored as naive UTC (SQLite has no time zones) and read
back as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import orm

__all__ = ["ApiKey", "Base", "SandboxRecord", "SnapshotRecord", "Team", "UTCDateTime"]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime in Python, a naive UTC one in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: sa.Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: datetime | None, dialect: sa.Dialect
    ) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Base(orm.DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: sa.JSON,
    }


class Team(Base):
    __tablename__ = "teams"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(32), primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    created_at: orm.Mapped[datetime] = orm.mapped_column(default=_now)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True, autoincrement=True)
    team_id: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    key_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    """sha256 of the whole key, hex."""
    prefix: orm.Mapped[str] = orm.mapped_column(sa.String(16), index=True)
    """The first characters of the key (``e2b_`` and 8 hex digits), to show and to revoke by."""
    created_at: orm.Mapped[datetime] = orm.mapped_column(default=_now)
    last_used_at: orm.Mapped[datetime | None]
    revoked_at: orm.Mapped[datetime | None]


class SandboxRecord(Base):
    __tablename__ = "sandboxes"
    __table_args__ = (
        sa.Index("ix_sandboxes_team_state_started", "team_id", "state", "started_at"),
    )

    id: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    team_id: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey("teams.id", ondelete="CASCADE")
    )
    template: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    alias: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    metadata_: orm.Mapped[dict[str, Any]] = orm.mapped_column("metadata", default=dict)
    env_vars_sealed: orm.Mapped[str] = orm.mapped_column(sa.Text())
    """Its environment variables, sealed (`sandlot.store.vault`) for ``sandboxes/<id>/env_vars``."""
    started_at: orm.Mapped[datetime]
    end_at: orm.Mapped[datetime]
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    """``running``, ``paused`` or ``killed``."""
    ended_at: orm.Mapped[datetime | None]
    access_token_sealed: orm.Mapped[str | None] = orm.mapped_column(sa.Text())
    """The sandbox plane's ``X-Access-Token``, sealed for ``sandboxes/<id>/access_token``; None
    when created ``secure: false``."""
    secure: orm.Mapped[bool]
    auto_pause: orm.Mapped[bool] = orm.mapped_column(default=False)
    cpu_count: orm.Mapped[float] = orm.mapped_column(sa.Float())
    memory_mb: orm.Mapped[int]
    disk_mb: orm.Mapped[int]
    pids: orm.Mapped[int]
    allow_internet: orm.Mapped[bool]
    network: orm.Mapped[dict[str, Any]] = orm.mapped_column(default=dict)
    """``{"allowOut": [...], "denyOut": [...]}`` as the creator gave them (normalised)."""
    auto_resume: orm.Mapped[bool] = orm.mapped_column(default=False)
    """Resume when paused at the first sandbox-plane request with a valid access token."""
    timeout: orm.Mapped[int] = orm.mapped_column(default=300)
    """Seconds of life it was made with: an auto-resume gives it this long again."""
    idle_timeout: orm.Mapped[int | None]
    """Seconds without activity after which it gets its on-timeout action; None: no limit."""
    boot: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="clean")
    """How its processes started: ``clean``, ``resume`` or ``fork``."""


class SnapshotRecord(Base):
    """A named snapshot of a sandbox: its files, and its memory unless made ``memory: false``.

    The files live in the snapshot store under ``id`` (`sandlot.lifecycle.snapshots`); the
    limits, template and environment here are the source's at the time, what a sandbox made
    from the snapshot gets.
    """

    __tablename__ = "snapshots"
    __table_args__ = (
        sa.UniqueConstraint("team_id", "name", "version", name="uq_snapshots_team_name_version"),
        sa.Index("ix_snapshots_team_created", "team_id", "created_at"),
    )

    id: orm.Mapped[str] = orm.mapped_column(sa.String(32), primary_key=True)
    team_id: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey("teams.id", ondelete="CASCADE")
    )
    name: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    version: orm.Mapped[int]
    """The tag is ``v<version>``, counted per name within the team."""
    sandbox_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    """The sandbox it was taken of."""
    template: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    memory: orm.Mapped[bool]
    size_bytes: orm.Mapped[int]
    cpu_count: orm.Mapped[float] = orm.mapped_column(sa.Float())
    memory_mb: orm.Mapped[int]
    disk_mb: orm.Mapped[int]
    pids: orm.Mapped[int]
    env_vars_sealed: orm.Mapped[str] = orm.mapped_column(sa.Text())
    """The environment, sealed for ``snapshots/<id>/env_vars``."""
    created_at: orm.Mapped[datetime]
    deleted_at: orm.Mapped[datetime | None]
