"""API keys: their shape, hashed storage, listing and revocation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from sandlot.store import db, keys, models


@pytest.fixture
def database(tmp_path: Path) -> db.Database:
    database = db.Database(db.sqlite_url(tmp_path))
    database.upgrade()
    yield database
    database.close()


def test_key_shape_passes_e2b_2_45(database: db.Database) -> None:
    key = keys.create_key(database, keys.default_team(database))
    assert re.fullmatch(r"e2b_[0-9a-f]{40}", key)


def test_only_the_hash_is_stored(database: db.Database) -> None:
    key = keys.create_key(database, keys.default_team(database))
    with database.session() as session:
        row = session.scalars(sa.select(models.ApiKey)).one()
        assert row.key_hash == keys.hash_key(key) and key not in (
            row.key_hash,
            row.prefix,
        )
        assert key.startswith(row.prefix)


def test_list_and_revoke(database: db.Database) -> None:
    team = keys.default_team(database)
    assert keys.default_team(database) == team
    first, second = keys.create_key(database, team), keys.create_key(database, team)
    assert keys.team_of(database, first) == team
    assert [k.prefix for k in keys.list_keys(database)] == [first[:12], second[:12]]
    with pytest.raises(ValueError):
        keys.revoke(database, "e2b_")
    assert keys.revoke(database, first[:12]) == 1
    assert keys.team_of(database, first) is None
    assert keys.team_of(database, second) == team
    listed = {k.prefix: k for k in keys.list_keys(database)}
    assert (
        listed[first[:12]].revoked_at is not None
        and listed[second[:12]].last_used_at is not None
    )
