"""The snapshot store: pause checkpoints and named snapshots, on disk and in the database.

Layout under ``<data dir>/snapshots/`` (every directory mode 0710 and every image 0640, owner
root, group the host gid a sandbox's root maps to: CRIU restores read memory images from inside
the sandbox's user namespace, `sandlot.runtime.images.seal`; other files 0600)::

    <sandbox id>/<kind>-<time>-<random>/   a pause checkpoint (CRIU images) of a live sandbox
    named/<snapshot id>/                   a named snapshot (``POST /sandboxes/{id}/snapshots``)
        manifest.json                      what it is and every file it holds, with sizes
        disk.img, memory/, runtime.json    the runtime driver's copy (`RuncDriver.snapshot`)

One directory per snapshot, named by an id that never changes and holding a manifest, so that an
object store can back it later (one prefix per snapshot, fetched whole before a restore). Names
and tags (``name:v3``) live only in the database: renaming never moves files.

A named snapshot is made in ``named/<id>.partial`` and renamed into place once complete; its
row is inserted after the rename. So a directory without a live row is nobody's (a crash, a
delete), and `sweep` removes it at start, with every checkpoint that is not the one a live
sandbox is paused in (half-written by a killed pause or fork, or spent by a resume).

Snapshots and pause checkpoints are kept for the retention (`AdmissionSettings.retention_days`):
`expire` deletes snapshots older than that, and the manager ends sandboxes paused that long
(`made_at` dates a checkpoint by its directory, so no column is needed). Both count against
their team's storage quota (`team_bytes`).

Deleting a snapshot never touches the sandboxes made from it: each owns a copy of the disk, and
a restored sandbox's memory is its own. A delete while a sandbox is being made from the snapshot
hides it at once (new creates get 404) and removes its files when the last create using them is
done (`using`), so neither the snapshot's reader nor the delete sees half of anything.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sandlot.lifecycle import errors, paging
from sandlot.runtime import faults
from sandlot.store import db
from sandlot.store import models as store

__all__ = ["SnapshotStore", "made_at", "parse_ref", "tag_of"]

logger = logging.getLogger("sandlot.lifecycle.snapshots")

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TAG = re.compile(r"^v([1-9][0-9]{0,8})$")
NAMED = "named"
"""The subdirectory of named snapshots; never a sandbox id (those are 20 characters)."""


def tag_of(row: store.SnapshotRecord) -> str:
    """The snapshot's id on the wire: ``name:v<version>``."""
    return f"{row.name}:v{row.version}"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name:vN`` as (name, N or None); `errors.InvalidRequest` otherwise."""
    name, colon, tag = ref.partition(":")
    match = _TAG.match(tag) if colon else None
    if not NAME.match(name) or (colon and match is None):
        raise errors.InvalidRequest(
            f"{ref!r} is not a snapshot id: use name or name:vN, the name 1-63 of a-z, 0-9, "
            "'.', '_' and '-'"
        )
    return name, int(match.group(1)) if match else None


def made_at(checkpoint: Path | None) -> datetime:
    """When a checkpoint was completed (its directory's last change); now when unknown."""
    try:
        return datetime.fromtimestamp(os.stat(checkpoint).st_mtime, UTC) if checkpoint else datetime.now(UTC)
    except FileNotFoundError:
        return datetime.now(UTC)


class SnapshotStore:
    """Where checkpoints and snapshots are kept, and the rows that name snapshots.

    Example:
        >>> snaps = SnapshotStore(settings.state_dir / "snapshots", database, group=100000)
        >>> snaps.open()
        >>> async with snaps.using(row) as path:
        ...     await driver.create_from_snapshot(spec=spec, source=path)
    """

    def __init__(self, root: Path, database: db.Database, *, group: int) -> None:
        self.root = root
        self.database = database
        self.group = group
        """The group of every directory: the host uid that root inside a sandbox maps to."""
        self._users: dict[str, int] = {}
        self._gone: set[str] = set()
        """Ids deleted since the start; their files go when `_users` drops to nothing."""
        self._naming = asyncio.Lock()
        self._oldest: datetime | None = None
        """Creation time of the oldest live snapshot, or earlier (None: there is none), so
        that `expire` asks the database only when one may be due."""

    # -- directories ---------------------------------------------------------------------------

    def open(self) -> None:
        self._private_dir(self.root)
        self._private_dir(self.root / NAMED)
        self._close_up()
        self._oldest = self._oldest_live()
        if self.group:
            for d in self.root.parents:
                if not os.stat(d).st_mode & 0o001:
                    logger.warning(
                        "lifecycle.snapshots %s is not searchable by others (chmod o+x): "
                        "snapshots under %s cannot be restored",
                        d,
                        self.root,
                    )
                    break

    def _close_up(self) -> None:
        """Take from others what earlier servers let them read or enter here (images 0644 in
        directories 0755): images become 0640 and directories 0710, group `group`."""
        for path in self.root.rglob("*"):
            st = path.lstat()
            if not st.st_mode & 0o007 or stat.S_ISLNK(st.st_mode):
                continue
            self._own(path)
            os.chmod(path, 0o710 if stat.S_ISDIR(st.st_mode) else 0o640)

    def _private_dir(self, path: Path) -> None:
        path.mkdir(mode=0o710, exist_ok=True)
        self._own(path)
        os.chmod(path, 0o710)

    def _own(self, path: Path) -> None:
        """Give ``path`` to root and `group`. A store not run by root (only tests on the
        FakeDriver are) cannot, and has no sandbox that must read it."""
        if os.geteuid() == 0:
            os.chown(path, 0, self.group)

    def new_checkpoint_dir(self, sandbox_id: str, kind: str) -> Path:
        """A fresh path for one checkpoint of a sandbox (not made: the driver makes it)."""
        sdir = self.root / sandbox_id
        self._private_dir(self.root)
        self._private_dir(sdir)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return sdir / f"{kind}-{stamp}-{secrets.token_hex(4)}"

    def remove_checkpoints(self, sandbox_id: str, keep: Path | None = None) -> None:
        """Remove a sandbox's checkpoints, all or all but ``keep``."""
        sdir = self.root / sandbox_id
        if keep is None:
            shutil.rmtree(sdir, ignore_errors=True)
            return
        for entry in sdir.iterdir() if sdir.exists() else ():
            if entry != keep:
                shutil.rmtree(entry, ignore_errors=True)

    def new_snapshot_dir(self) -> tuple[str, Path]:
        """A new snapshot id and the path (not made) its files are written to first."""
        self._private_dir(self.root / NAMED)
        snapshot_id = secrets.token_hex(8)
        return snapshot_id, self.root / NAMED / f"{snapshot_id}.partial"

    def path(self, snapshot_id: str) -> Path:
        return self.root / NAMED / snapshot_id

    async def sweep(self, live_sandboxes: Collection[str], checkpoints: Mapping[str, Path]) -> None:
        """At start: remove every checkpoint but those live sandboxes are paused in
        (``checkpoints``, sandbox id to directory: the others are half-written, spent or
        nobody's), and snapshot directories without a live row (half-made, or deleted while
        in use when the server stopped); mark the rows whose files are missing deleted."""
        rows = await asyncio.to_thread(self._live_ids)

        def checkpoints_of_nobody() -> builtins.list[Path]:
            found = []
            for entry in self.root.iterdir():
                if entry.name == NAMED:
                    continue
                if entry.name not in live_sandboxes:
                    found.append(entry)
                else:
                    found += [c for c in entry.iterdir() if c != checkpoints.get(entry.name)]
            return found

        for entry in await asyncio.to_thread(checkpoints_of_nobody):
            await asyncio.to_thread(shutil.rmtree, entry, True)
        on_disk = set()
        for entry in await asyncio.to_thread(lambda: list((self.root / NAMED).iterdir())):
            if entry.name in rows and (entry / "manifest.json").exists():
                on_disk.add(entry.name)
            else:
                await asyncio.to_thread(shutil.rmtree, entry, True)
        lost = rows - on_disk
        if lost:
            logger.warning("lifecycle.snapshots lost the files of %s", ", ".join(sorted(lost)))
            await asyncio.to_thread(self._mark_deleted, lost)

    # -- rows ----------------------------------------------------------------------------------

    async def commit(
        self, snapshot_id: str, partial: Path, *, name: str | None, fields: dict[str, Any]
    ) -> store.SnapshotRecord:
        """Name the complete snapshot in ``partial`` (the next tag of ``name``, or a new name),
        write its manifest and move it into place; nothing of it stays if that fails."""
        size, files = await asyncio.to_thread(_sizes, partial)
        final = self.path(snapshot_id)
        async with self._naming:
            try:
                row = await asyncio.to_thread(self._next_row, snapshot_id, name, fields, size)
                manifest = {
                    "format": 1,
                    "id": snapshot_id,
                    "snapshot": tag_of(row),
                    "team": row.team_id,
                    "sandbox": row.sandbox_id,
                    "template": row.template,
                    "memory": row.memory,
                    "created_at": row.created_at.isoformat(),
                    "files": files,
                }
                await asyncio.to_thread(_write_manifest, partial, manifest)
                await asyncio.to_thread(os.rename, partial, final)
                faults.crash_point("snapshot.moved")
                await asyncio.to_thread(self._insert, row)
                self._oldest = min(self._oldest or row.created_at, row.created_at)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, partial, True)
                await asyncio.to_thread(shutil.rmtree, final, True)
                raise
        return row

    def _next_row(
        self, snapshot_id: str, name: str | None, fields: dict[str, Any], size: int
    ) -> store.SnapshotRecord:
        team = fields["team_id"]
        with self.database.session() as session:
            if name is None:
                while True:  # a random name nobody in the team has used
                    name = f"snap-{secrets.token_hex(4)}"
                    if not session.scalar(
                        sa.select(sa.func.count()).where(
                            store.SnapshotRecord.team_id == team, store.SnapshotRecord.name == name
                        )
                    ):
                        break
            # Deleted versions count: a tag never names a second snapshot.
            last = session.scalar(
                sa.select(sa.func.max(store.SnapshotRecord.version)).where(
                    store.SnapshotRecord.team_id == team, store.SnapshotRecord.name == name
                )
            )
        return store.SnapshotRecord(
            id=snapshot_id,
            name=name,
            version=(last or 0) + 1,
            size_bytes=size,
            created_at=datetime.now(UTC),
            deleted_at=None,
            **fields,
        )

    def _insert(self, row: store.SnapshotRecord) -> None:
        with self.database.session() as session:
            session.add(row)

    def _live_ids(self) -> set[str]:
        with self.database.session() as session:
            return set(
                session.scalars(
                    sa.select(store.SnapshotRecord.id).where(store.SnapshotRecord.deleted_at.is_(None))
                )
            )

    def _oldest_live(self) -> datetime | None:
        with self.database.session() as session:
            return session.scalar(
                sa.select(sa.func.min(store.SnapshotRecord.created_at)).where(store.SnapshotRecord.deleted_at.is_(None))
            )

    def team_bytes(self, team_id: str, paused: Iterable[str]) -> int:
        """Disk the team's live snapshots and the checkpoints of its ``paused`` sandboxes take."""
        with self.database.session() as session:
            total = session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(store.SnapshotRecord.size_bytes), 0)).where(
                    store.SnapshotRecord.team_id == team_id, store.SnapshotRecord.deleted_at.is_(None)
                )
            )
        return int(total or 0) + sum(_held(self.root / s) for s in paused)

    def _mark_deleted(self, ids: Iterable[str]) -> None:
        with self.database.session() as session:
            session.execute(
                sa.update(store.SnapshotRecord)
                .where(store.SnapshotRecord.id.in_(list(ids)))
                .values(deleted_at=datetime.now(UTC))
            )

    async def find(self, team_id: str, ref: str) -> store.SnapshotRecord | None:
        """The team's live snapshot ``name:vN``, or the newest version of ``name``."""
        name, version = parse_ref(ref)
        return await asyncio.to_thread(self._find, team_id, name, version)

    def _find(self, team_id: str, name: str, version: int | None) -> store.SnapshotRecord | None:
        query = self._live(team_id).where(store.SnapshotRecord.name == name)
        if version is not None:
            query = query.where(store.SnapshotRecord.version == version)
        with self.database.session() as session:
            return session.scalars(query.order_by(store.SnapshotRecord.version.desc()).limit(1)).first()

    @staticmethod
    def _live(team_id: str) -> sa.Select[store.SnapshotRecord]:
        return sa.select(store.SnapshotRecord).where(
            store.SnapshotRecord.team_id == team_id, store.SnapshotRecord.deleted_at.is_(None)
        )

    async def list(
        self,
        team_id: str,
        *,
        sandbox_id: str | None = None,
        ref: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[builtins.list[store.SnapshotRecord], str | None]:
        """One page of the team's snapshots, newest first, and the token of the next page.
        ``ref`` is a name (every version) or ``name:vN`` (that one)."""
        paging.check_limit(limit)
        query = self._live(team_id)
        if sandbox_id:
            query = query.where(store.SnapshotRecord.sandbox_id == sandbox_id)
        if ref:
            name, version = parse_ref(ref)
            query = query.where(store.SnapshotRecord.name == name)
            if version is not None:
                query = query.where(store.SnapshotRecord.version == version)
        if next_token:
            when, last_id = paging.decode(next_token)
            query = query.where(
                sa.tuple_(store.SnapshotRecord.created_at, store.SnapshotRecord.id)
                < sa.tuple_(sa.literal(when, store.UTCDateTime()), sa.literal(last_id))
            )
        query = query.order_by(
            store.SnapshotRecord.created_at.desc(), store.SnapshotRecord.id.desc()
        ).limit(limit + 1)

        def run() -> builtins.list[store.SnapshotRecord]:
            with self.database.session() as session:
                return builtins.list(session.scalars(query))

        rows = await asyncio.to_thread(run)
        return paging.cut(rows, limit, lambda r: (r.created_at, r.id))

    async def delete(self, team_id: str, ref: str) -> bool:
        """Delete ``name:vN``, or every version of ``name``; False when there is none.

        The rows go at once; each snapshot's files go now, or when the last sandbox being made
        from it is done."""
        name, version = parse_ref(ref)
        query = self._live(team_id).where(store.SnapshotRecord.name == name)
        if version is not None:
            query = query.where(store.SnapshotRecord.version == version)
        return bool(await self._drop(query))

    async def expire(self, before: datetime) -> datetime | None:
        """Delete every snapshot made before ``before`` (as `delete`); the creation time of
        the oldest one left, if any."""
        if self._oldest is None or self._oldest > before:
            return self._oldest
        query = sa.select(store.SnapshotRecord).where(
            store.SnapshotRecord.deleted_at.is_(None), store.SnapshotRecord.created_at <= before
        )
        for snapshot_id in await self._drop(query):
            logger.info("lifecycle.retention snapshot %s: older than the retention, deleted", snapshot_id)
        self._oldest = await asyncio.to_thread(self._oldest_live)
        return self._oldest

    async def _drop(self, query: sa.Select[store.SnapshotRecord]) -> builtins.list[str]:
        """Mark the snapshots ``query`` finds deleted, and remove their files now or when the
        last sandbox being made from each is done; their ids."""

        def mark() -> builtins.list[str]:
            with self.database.session() as session:
                rows = builtins.list(session.scalars(query))
                for row in rows:
                    row.deleted_at = datetime.now(UTC)
                return [r.id for r in rows]

        ids = await asyncio.to_thread(mark)
        for snapshot_id in ids:
            self._gone.add(snapshot_id)
            if not self._users.get(snapshot_id):
                await asyncio.to_thread(shutil.rmtree, self.path(snapshot_id), True)
        return ids

    @contextlib.asynccontextmanager
    async def using(self, row: store.SnapshotRecord) -> AsyncIterator[Path]:
        """The snapshot's directory, kept whole until the block ends even if it is deleted
        meanwhile; `errors.SnapshotNotFound` when it was deleted before."""
        if row.id in self._gone:
            raise errors.SnapshotNotFound(tag_of(row))
        self._users[row.id] = self._users.get(row.id, 0) + 1
        try:
            yield self.path(row.id)
        finally:
            self._users[row.id] -= 1
            if not self._users[row.id]:
                del self._users[row.id]
                if row.id in self._gone:
                    await asyncio.shield(asyncio.to_thread(shutil.rmtree, self.path(row.id), True))


def _held(checkpoints: Path) -> int:
    """Bytes a paused sandbox's checkpoints take; 0 when they are gone, even while being
    counted (a resume at the same moment spends them)."""
    try:
        return _sizes(checkpoints)[0] if checkpoints.is_dir() else 0
    except FileNotFoundError:
        return 0


def _sizes(directory: Path) -> tuple[int, dict[str, int]]:
    """Bytes the directory takes on disk (sparse files count what they hold), and the
    apparent size of every file in it by relative path."""
    total, files = 0, {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        total += st.st_blocks * 512
        if path.is_file():
            files[str(path.relative_to(directory))] = st.st_size
    return total, files


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / "manifest.json.tmp"
    with open(tmp, "w", opener=lambda p, f: os.open(p, f, 0o600)) as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, directory / "manifest.json")
