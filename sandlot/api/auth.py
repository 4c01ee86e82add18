"""Team API keys in ``X-API-Key``.

Keys are checked against their sha256 in the store, and the answer is cached in memory for a
few seconds (`TTL`) so that a busy client costs a dict lookup, not a database read, per
request: a key revoked with `sandlot keys revoke` stops working within `TTL` seconds.
``last_used_at`` is written at most once a minute per key.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from sandlot.api import errors
from sandlot.store import db, keys, models

__all__ = ["KeyCache", "Team", "team", "team_if_any"]

TTL = 5.0
TOUCH_EVERY = 60.0

_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="A team API key (`e2b_` + 40 hex digits).",
)


class KeyCache:
    def __init__(self, database: db.Database) -> None:
        self.database = database
        self._teams: dict[str, tuple[str | None, float]] = {}
        self._touched: dict[str, float] = {}

    async def team_of(self, key: str) -> str | None:
        digest = keys.hash_key(key)
        now = time.monotonic()
        cached = self._teams.get(digest)
        if cached is None or now - cached[1] > TTL:
            team_id = await asyncio.to_thread(self._lookup, digest)
            if len(self._teams) > 10000:
                self._teams.clear()
            self._teams[digest] = cached = (team_id, now)
        if (
            cached[0] is not None
            and now - self._touched.get(digest, -TOUCH_EVERY) >= TOUCH_EVERY
        ):
            self._touched[digest] = now
            await asyncio.to_thread(self._touch, digest)
        return cached[0]

    def _lookup(self, digest: str) -> str | None:
        with self.database.session() as session:
            row = session.execute(
                sa.select(models.ApiKey.team_id, models.ApiKey.revoked_at).where(
                    models.ApiKey.key_hash == digest
                )
            ).first()
        return row.team_id if row is not None and row.revoked_at is None else None

    def _touch(self, digest: str) -> None:
        with self.database.session() as session:
            session.execute(
                sa.update(models.ApiKey)
                .where(models.ApiKey.key_hash == digest)
                .values(last_used_at=datetime.now(UTC))
            )


async def team(request: Request, key: str | None = Security(_header)) -> str:
    """The id of the team whose key the request carries; 401 otherwise."""
    if not key:
        raise errors.ApiError(
            401, "missing API key: send a team key in the X-API-Key header"
        )
    return await _team_of(request, key)


async def team_if_any(request: Request, key: str | None = Security(_header)) -> str | None:
    """The id of the team whose key the request carries, None when it carries none; 401 for
    a key that is not valid (a caller who sends one wants to know)."""
    return await _team_of(request, key) if key else None


async def _team_of(request: Request, key: str) -> str:
    cache: KeyCache | None = getattr(request.app.state, "keys", None)
    if cache is None:
        raise errors.ApiError(503, "starting")
    team_id = await cache.team_of(key)
    if team_id is None:
        raise errors.ApiError(401, "invalid or revoked API key")
    return team_id


Team = Annotated[str, Depends(team)]
"""A route parameter holding the caller's team id (the route answers 401 without a valid key)."""
