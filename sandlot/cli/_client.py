"""What every CLI command that talks to a server shares: options, error lines, spinners.

The commands go through the sync SDK, so a server error reaches the shell as one red line on
stderr and a documented exit status, never a traceback. Spinners and progress bars are drawn
on stderr, and only when stderr is a terminal: output piped to a script is exactly the result.

Example:
    >>> config = _client.config(api_url, api_key)
    >>> with _client.spinner("pausing sbx1f2e"):
    ...     _client.sdk(lambda: Sandbox.pause("sbx1f2e", config=config))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from sandlot import CommandExitError, ConnectionConfig, SandlotError

__all__ = ["ApiKey", "ApiUrl", "config", "console", "errors", "fail", "sdk", "spinner"]

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

T = TypeVar("T")

ApiUrl = Annotated[
    str | None, typer.Option("--api-url", envvar="SANDLOT_API_URL", help="Server (default: http://127.0.0.1:3000).")
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="SANDLOT_API_KEY", help="Team API key.", show_default=False)
]


def config(api_url: str | None, api_key: str | None, code: int = 1) -> ConnectionConfig:
    """The connection config of a command: its options, then the environment (a bad URL exits ``code``)."""
    return sdk(lambda: ConnectionConfig.from_env(api_url=api_url, api_key=api_key), code)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one red ``error:`` line on stderr and exit with ``code``."""
    errors.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def sdk(call: Callable[[], T], code: int = 1) -> T:
    """Run an SDK call, turning its errors into one red line and exit status ``code``."""
    try:
        return call()
    except CommandExitError:
        raise  # the command's own failure: the caller exits with its code
    except SandlotError as exc:
        fail(str(exc), code)
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None


@contextlib.contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs (nothing when stderr is not a terminal)."""
    if not errors.is_terminal:
        yield
        return
    with errors.status(escape(text), spinner="dots"):
        yield
