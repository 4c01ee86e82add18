"""The ``sandlot`` command. This module only assembles one sub-app per noun.

Example:
    $ sandlot template build base
    $ sandlot template list
    $ sandlot run hello.py
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from sandlot.cli import demo, keys, run, sandbox, serve, snapshots, templates

__all__ = ["app"]

app = typer.Typer(
    name="sandlot",
    help="A self-hostable sandbox platform: isolated Linux sandboxes for untrusted code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(templates.app, name="template")
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(snapshots.app, name="snapshot")
app.command("run")(run.run)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what sandlot does.")] = False,
) -> None:
    """A self-hostable sandbox platform: isolated Linux sandboxes for untrusted code."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(show_path=False)],
    )
