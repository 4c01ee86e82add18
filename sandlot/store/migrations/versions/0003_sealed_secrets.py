"""Seal the secrets: sandboxes' access tokens and environments, snapshots' environments.

Revision ID: 0003
Revises: 0002

Every row's clear value is sealed with the server's key (`sandlot.store.vault`) into a new
column, and the clear column is dropped; tokens stay the same, so clients that hold one go on
using it. The key comes from `Database.upgrade` (``vault``): a database with rows to seal
cannot be upgraded without it. SQLite's ``secure_delete`` (`sandlot.store.db`) zeroes the
pages the clear values leave, and the upgrade truncates the WAL after, so no copy stays in
the files.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SECRETS: dict[str, dict[str, sa.types.TypeEngine[Any]]] = {
    "sandboxes": {"env_vars": sa.JSON(), "access_token": sa.String(128)},
    "snapshots": {"env_vars": sa.JSON()},
}
"""The clear columns this revision seals, by table; each becomes ``<name>_sealed``."""
_MAY_BE_NULL = {"access_token"}


def upgrade() -> None:
    vault = _vault()
    for table, columns in _SECRETS.items():
        _move(table, columns, vault, seal=True)


def downgrade() -> None:
    vault = _vault()
    for table, columns in _SECRETS.items():
        _move(table, columns, vault, seal=False)


def _vault() -> Any:
    """The key `Database.upgrade` was given; refused before any change (SQLite's DDL is not
    undone with the transaction here) when there are rows and no key."""
    vault = context.config.attributes.get("vault")
    bind = op.get_bind()
    rows = sum(bind.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one() for t in _SECRETS)
    if rows and vault is None:
        raise RuntimeError(
            f"revision 0003 moves the secrets of {rows} rows and needs the server's key: upgrade "
            "with `sandlot serve`, or Database.upgrade(vault=...)"
        )
    return vault


def _move(table: str, columns: dict[str, sa.types.TypeEngine[Any]], vault: Any, *, seal: bool) -> None:
    """Move each of ``columns`` of ``table`` to its sealed column (``seal``) or back: add the
    new column, fill it row by row, make it NOT NULL unless it may be null, drop the old."""
    types = {**columns, **{f"{name}_sealed": sa.Text() for name in columns}}
    moves = {name: (name, f"{name}_sealed") if seal else (f"{name}_sealed", name) for name in columns}
    with op.batch_alter_table(table) as batch:
        for _, target in moves.values():
            batch.add_column(sa.Column(target, types[target], nullable=True))
    t = sa.table(table, sa.column("id"), *(sa.column(name, kind) for name, kind in types.items()))
    bind = op.get_bind()
    rows = bind.execute(sa.select(t.c.id, *(t.c[source] for source, _ in moves.values()))).all()
    for row in rows:
        values = {}
        for name, (source, target) in moves.items():
            value, where = row._mapping[source], f"{table}/{row.id}/{name}"
            if value is not None:
                value = vault.seal(value, row=where) if seal else vault.unseal(value, row=where)
            values[target] = value
        bind.execute(t.update().where(t.c.id == row.id).values(**values))
    with op.batch_alter_table(table) as batch:
        for name, (source, target) in moves.items():
            if name not in _MAY_BE_NULL:
                batch.alter_column(target, existing_type=types[target], nullable=False)
            batch.drop_column(source)
