"""``sandlot keys``: create, list and revoke team API keys in the server's store.

Works beside a running server (SQLite in WAL mode); a revoked key stops working within a few
seconds (`sandlot.api.auth.TTL`).

Example:
    $ export E2B_API_KEY=$(sandlot keys create)
    $ sandlot keys list
    $ sandlot keys revoke e2b_1a2b3c4d
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from sandlot.cli import serve

if TYPE_CHECKING:
    from sandlot.store import db

# sandlot.store (SQLAlchemy) is imported by the commands that use it, not with the CLI: see serve.py.

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke team API keys.", no_args_is_help=True)

console = Console()
errors = Console(stderr=True)


def _database(data_dir: object) -> db.Database:
    from sandlot.store import db

    settings = serve.settings_for(data_dir)  # type: ignore[arg-type]
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    return db.migrated(settings.database_url, settings.state_dir)


@app.command("create")
def create(data_dir: serve.DataDir = None) -> None:
    """Make a new key of the (first) team and print it alone on stdout."""
    from sandlot.store import keys

    database = _database(data_dir)
    try:
        key = keys.create_key(database, keys.default_team(database))
    finally:
        database.close()
    print(key)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@app.command("list")
def list_(data_dir: serve.DataDir = None) -> None:
    """Every key: its prefix, when it was made, last used and revoked."""
    from sandlot.store import keys

    database = _database(data_dir)
    try:
        found = keys.list_keys(database)
    finally:
        database.close()
    table = Table("prefix", "created (UTC)", "last used", "revoked", box=box.SIMPLE)
    for key in found:
        table.add_row(
            key.prefix + "…",
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
        )
    console.print(table)


@app.command("revoke")
def revoke(
    prefix: Annotated[
        str,
        typer.Argument(
            help="The key's prefix as `keys list` shows it, or the whole key."
        ),
    ],
    data_dir: serve.DataDir = None,
) -> None:
    """Revoke the key(s) starting with PREFIX."""
    from sandlot.store import keys

    database = _database(data_dir)
    try:
        count = keys.revoke(database, prefix.rstrip("…"))
    except ValueError as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    finally:
        database.close()
    if not count:
        errors.print(f"[red]no live key starts with {prefix}[/]")
        raise typer.Exit(1)
    errors.print(f"revoked {count} key{'s' if count > 1 else ''}")
