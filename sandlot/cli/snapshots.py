"""``sandlot snapshot``: list and delete the team's snapshots, through the sync SDK.

A snapshot is taken with ``sandlot sandbox snapshot ID`` (it belongs to the sandbox commands,
like ``fork``: it acts on a sandbox) and used with ``sandlot sandbox create --template
NAME:TAG``; this group manages what was taken. Exit codes are those of ``sandlot sandbox``:
0 it worked, 1 sandlot failed or there was no such snapshot, 2 a usage error.

Example:
    $ sandlot snapshot list --sandbox sbx1f2e
    $ sandlot snapshot delete deps-installed:v1
    $ sandlot snapshot delete deps-installed      # every version
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from sandlot import Sandbox
from sandlot.cli import _client

__all__ = ["app"]

app = typer.Typer(help="List and delete snapshots (take one with `sandlot sandbox snapshot ID`).", no_args_is_help=True)


@app.command("list")
def list_command(
    sandbox: Annotated[str | None, typer.Option("--sandbox", "-s", help="Only snapshots of this sandbox.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only versions of this name.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """List the team's snapshots in a table.

    Example:
        $ sandlot snapshot list --sandbox sbx1f2e
    """
    config = _client.config(api_url, api_key)
    found = _client.sdk(lambda: Sandbox.list_snapshots(sandbox, name=name, limit=limit, config=config))
    table = Table("id", "sandbox", "memory", "size", "created", box=box.SIMPLE_HEAD)
    table.columns[0].no_wrap = True
    for snap in found:
        table.add_row(
            escape(snap.snapshot_id),
            escape(snap.sandbox_id or ""),
            "yes" if snap.memory else "files only",
            _size(snap.size_bytes),
            snap.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if snap.created_at else "",
        )
    _client.console.print(table)


@app.command("delete")
def delete_command(
    snapshot_id: Annotated[str, typer.Argument(help="NAME:TAG for one version, NAME for all.", show_default=False)],
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Delete a snapshot (sandboxes made from it are not touched). Exits 1 if there was none.

    Example:
        $ sandlot snapshot delete deps-installed:v1
    """
    config = _client.config(api_url, api_key)
    if not _client.sdk(lambda: Sandbox.delete_snapshot(snapshot_id, config=config)):
        _client.fail(f"no snapshot {snapshot_id}")
    _client.errors.print(f"deleted {escape(snapshot_id)}")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
