"""Teams and their API keys.

A key is ``e2b_`` and 40 lowercase hex digits (160 random bits): the shape the e2b SDK 2.45.1
insists on (``^e2b_[0-9a-f]+$``). Only its sha256 is stored, with the first 12 characters for
display and revocation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from sandlot.store import db, models

__all__ = [
    "KeyInfo",
    "create_key",
    "create_team",
    "default_team",
    "hash_key",
    "list_keys",
    "new_key",
    "revoke",
]

PREFIX_LENGTH = 12


def new_key() -> str:
    return "e2b_" + secrets.token_hex(20)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    prefix: str
    team_id: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_team(database: db.Database, name: str) -> str:
    team_id = uuid.uuid4().hex
    with database.session() as session:
        session.add(models.Team(id=team_id, name=name))
    return team_id


def default_team(database: db.Database) -> str:
    """The first team, made (as ``default``) when there is none."""
    with database.session() as session:
        team_id = session.scalar(
            sa.select(models.Team.id).order_by(models.Team.created_at).limit(1)
        )
    return team_id or create_team(database, "default")


def create_key(database: db.Database, team_id: str) -> str:
    """A new key of ``team_id``; the only time the whole key is seen."""
    key = new_key()
    with database.session() as session:
        session.add(
            models.ApiKey(
                team_id=team_id, key_hash=hash_key(key), prefix=key[:PREFIX_LENGTH]
            )
        )
    return key


def list_keys(database: db.Database) -> list[KeyInfo]:
    with database.session() as session:
        rows = session.scalars(
            sa.select(models.ApiKey).order_by(
                models.ApiKey.created_at, models.ApiKey.id
            )
        )
        return [
            KeyInfo(r.prefix, r.team_id, r.created_at, r.last_used_at, r.revoked_at)
            for r in rows
        ]


def revoke(database: db.Database, prefix: str) -> int:
    """Revoke every live key starting with ``prefix`` (at least the ``e2b_`` part and 4 more
    characters, so that a typo cannot revoke them all); the number revoked."""
    if len(prefix) < 8:
        raise ValueError("give at least 8 characters of the key (e.g. e2b_1a2b)")
    with database.session() as session:
        rows = session.scalars(
            sa.select(models.ApiKey).where(
                models.ApiKey.revoked_at.is_(None),
                models.ApiKey.prefix.startswith(prefix[:PREFIX_LENGTH]),
            )
        ).all()
        rows = [r for r in rows if r.prefix.startswith(prefix[:PREFIX_LENGTH])]
        for row in rows:
            row.revoked_at = datetime.now(UTC)
        return len(rows)


def team_of(database: db.Database, key: str) -> str | None:
    """The team of a live key, or None; records the use."""
    with database.session() as session:
        row = session.scalar(
            sa.select(models.ApiKey).where(models.ApiKey.key_hash == hash_key(key))
        )
        if row is None or row.revoked_at is not None:
            return None
        row.last_used_at = datetime.now(UTC)
        return row.team_id
