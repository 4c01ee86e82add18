"""The database: an engine from a URL, sessions, and migrations run at start.

SQLite is the embedded default, at ``<data_dir>/sandlot.db``, in WAL mode so that readers
(`sandlot keys list` beside a running server) never wait for the writer; ``busy_timeout``
makes a second writer (`sandlot keys create` while the server runs) wait instead of failing.
PostgreSQL works by URL.

The database holds every team's sandboxes and key hashes, so its files are root's alone: the
file is made 0600 before SQLite opens it (SQLite gives ``-wal`` and ``-shm`` the mode of the
database), an existing one is made 0600 again, and ``secure_delete`` zeroes what a delete or
update leaves behind instead of keeping it in free pages. Secrets in it are sealed besides
(`sandlot.store.vault`).

The engine is synchronous. The server calls it through ``asyncio.to_thread`` and keeps what
the hot paths read (live sandboxes, key hashes) in memory (`sandlot.lifecycle.manager`): a
``GET /sandboxes/{id}`` never touches the database.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import orm

from sandlot.store.vault import Vault

__all__ = ["Database", "migrated", "sqlite_url"]

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
            _make_private(sa.engine.make_url(url).database)
            self.engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._sessions = orm.sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[orm.Session]:
        """A session that commits when the block ends normally and rolls back otherwise."""
        with self._sessions() as session, session.begin():
            yield session

    def upgrade(self, revision: str = "head", *, vault: Vault | None = None) -> None:
        """Bring the schema to ``revision`` with the packaged Alembic migrations; ``vault``
        seals what a migration moves out of the clear (revision 0003 needs it when there are
        sandboxes or snapshots)."""
        with self.engine.begin() as connection:
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            config.attributes["vault"] = vault
            command.upgrade(config, revision)
        if self.engine.dialect.name == "sqlite":
            # Frames written before (clear values, in a WAL a crash left) go with the WAL.
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.engine.dispose()


def migrated(url: str, data_dir: Path) -> Database:
    """The database at ``url`` brought to the head revision, with the key of ``data_dir``
    (`Vault.open`) for what the migrations seal: how the server and the CLI open it."""
    database = Database(url)
    try:
        database.upgrade(vault=Vault.open(data_dir))
    except BaseException:
        database.close()
        raise
    return database


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
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _make_private(path: str | None) -> None:
    """Make the database file (unless in memory) 0600 before SQLite opens it, and its WAL and
    shared-memory files too when an older server left them more open."""
    if not path or path == ":memory:":
        return
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)
