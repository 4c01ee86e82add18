"""The database: an engine from a URL, sessions, and migrations run at start.

SQLite is the embedded default, at ``<data_dir>/sandlot.db``, in WAL mode so that readers
(`sandlot keys list` beside a running server) never wait for the writer; ``busy_timeout``
makes a second writer (`sandlot keys create` while the server runs) wait instead of failing.
PostgreSQL works by URL.

The engine is synchronous. The server calls it through ``asyncio.to_thread`` and keeps what
the hot paths read (live sandboxes, key hashes) in memory (`sandlot.lifecycle.manager`): a
``GET /sandboxes/{id}`` never touches the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import orm

__all__ = ["Database", "sqlite_url"]

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'sandlot.db'}"


class Database:
    """One engine and its session factory.

    Example:
        >>> db = Database("sqlite:////var/lib/sandlot/sandlot.db")
        >>> db.upgrade()
        >>> with db.session() as session:
        ...     session.add(models.Team(id="t1", name="default"))
    """

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._sessions = orm.sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[orm.Session]:
        """A session that commits when the block ends normally and rolls back otherwise."""
        with self._sessions() as session, session.begin():
            yield session

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the packaged Alembic migrations."""
        with self.engine.begin() as connection:
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def close(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
