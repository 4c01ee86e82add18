"""``sandlot serve``: the server, both planes on one port.

On the first start it makes a team and an API key and writes the key to ``<data_dir>/api-key``
(mode 0600: only root reads it); later starts print where it is. The server's secret key, which
seals the secrets in the database, is ``<data_dir>/secret-key`` (0600; `sandlot.store.vault`):
back it up with the database. uvicorn runs the app and turns SIGTERM and Ctrl-C into a clean
shutdown (the sandboxes keep running; see `sandlot.api.app`),
which has `SHUTDOWN_DEADLINE` seconds to finish.

The server's modules (FastAPI, SQLAlchemy, uvicorn: most of a second to import) are imported
when a command needs them, not with this module: every ``sandlot`` command imports it, and
``sandlot run`` or ``sandlot sandbox exec`` should start in the time the SDK takes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from sandlot.config import Settings

__all__ = ["serve", "settings_for"]

errors = Console(stderr=True)

GRACE = 5
"""Seconds requests under way get to finish after SIGTERM before uvicorn cancels them."""
SHUTDOWN_DEADLINE = 9.0
"""Seconds from SIGTERM to the process's exit, whatever is still at work then. Leaving at
once is safe: every operation survives a SIGKILL at any point (the next start reconciles),
and a server an operator cannot stop is worse than one that stops mid-operation."""

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Sandboxes, the database and the API key [env: SANDLOT_DATA_DIR; default /var/lib/sandlot].",
    ),
]


def settings_for(data_dir: Path | None, **server: object) -> Settings:
    return Settings.from_env(server={"data_dir": data_dir, **server}, data_dir=data_dir)


def first_key(settings: Settings) -> tuple[Path, bool]:
    """The file holding the first API key, made (with its team) when the store has no key."""
    from sandlot.store import db, keys

    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    path = settings.state_dir / "api-key"
    database = db.migrated(settings.database_url, settings.state_dir)
    try:
        if keys.list_keys(database):
            return path, False
        key = keys.create_key(database, keys.default_team(database))
    finally:
        database.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    return path, True


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on [env: SANDLOT_HOST; default 127.0.0.1]."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [env: SANDLOT_PORT; default 3000].")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the sandlot server: the E2B-compatible control plane and the sandbox plane."""
    import uvicorn

    from sandlot.api import app as server_app

    if os.geteuid() != 0:
        errors.print(
            "[red]sandlot serve must run as root[/] (it runs sandboxes with runc)"
        )
        raise typer.Exit(1)
    # Nothing the server makes is writable by others, whatever umask it was started with. The
    # private files (database, keys, checkpoints) get 0600/0700 modes of their own: a stricter
    # umask would also strip what sandboxes need (o+x on their directories, 0644 files in them).
    os.umask(0o022)
    settings = settings_for(data_dir, host=host, port=port)
    path, made = first_key(settings)
    if made:
        errors.print(
            f"Created a team and its first API key: [bold]{path}[/] (readable by root only)"
        )
    else:
        errors.print(f"API keys: `sandlot keys list`; the first one is in {path}")
    server = settings.server
    errors.print(
        f"sandlot listening on http://{server.host}:{server.port}  "
        f"(E2B_API_URL=E2B_SANDBOX_URL=http://{server.host}:{server.port})"
    )
    logging.getLogger("sandlot").setLevel(min(logging.getLogger().level, logging.INFO))
    # uvicorn turns SIGTERM into a graceful shutdown, then raises the signal again once done:
    # this handler makes that last step an exit with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    config = uvicorn.Config(
        server_app.create_app(settings),
        host=server.host,
        port=server.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACE,
    )
    uvicorn_server = uvicorn.Server(config)
    graceful = uvicorn_server.handle_exit

    def handle_exit(sig: int, frame: FrameType | None) -> None:
        _exit_after(SHUTDOWN_DEADLINE)
        graceful(sig, frame)

    uvicorn_server.handle_exit = handle_exit  # type: ignore[method-assign]
    uvicorn_server.run()


def _exit_after(seconds: float) -> None:
    """End the process ``seconds`` from now if it has not ended by then (armed once)."""
    if any(t.name == "sandlot-exit-deadline" for t in threading.enumerate()):
        return

    def leave() -> None:
        logging.getLogger("sandlot").warning(
            "server.stop still at work %.0f s after the signal: exiting now (the next start reconciles)", seconds
        )
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, leave)
    timer.name, timer.daemon = "sandlot-exit-deadline", True
    timer.start()
