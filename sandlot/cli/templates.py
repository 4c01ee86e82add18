"""``sandlot template``: build template root filesystems and list them.

Errors a user can act on (a bad spec, a failed apt-get, not being root) are one red line, plus
the tail of the failed command's output, and exit status 1; a traceback would only bury them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, NoReturn, Self

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sandlot import config
from sandlot.templates import builder, spec

__all__ = ["app"]

app = typer.Typer(help="Build and list sandbox templates.", no_args_is_help=True)

console = Console()
errors = Console(stderr=True)

CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Where templates are built [default: $SANDLOT_CACHE_DIR or /var/cache/sandlot]."
    ),
]
SpecDirs = Annotated[
    list[Path] | None,
    typer.Option(
        "--spec-dir", help="Another directory of NAME.toml specs, searched before the built-in ones."
    ),
]

_STEP_LABELS = {
    "debootstrap": "debootstrap",
    "packages": "packages",
    "user": "user",
    "commands": "commands",
    "cleanup": "clean up",
    "shift": "ownership shift",
}


@app.command("build")
def build_command(
    name: Annotated[str, typer.Argument(help="The template to build, e.g. base.")],
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if this spec is already built.")
    ] = False,
    cache_dir: CacheDir = None,
    spec_dir: SpecDirs = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing if it is already built.")
    ] = False,
) -> None:
    """Build template NAME from its spec, unless that exact spec is already built.

    Example:
        $ sandlot template build base
    """
    settings = _settings(cache_dir)
    started = time.monotonic()
    try:
        template = spec.load(name, spec_dir or [])
        cached = not force and (builder.target(template, settings) / "template.json").is_file()
        if cached:
            path = builder.build(template, settings)
        else:
            with _StepProgress() as progress:
                path = builder.build(template, settings, force=force, progress=progress.update)
        size = int(builder.read_metadata(path)["size_bytes"])  # type: ignore[call-overload]
    except spec.TemplateError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None
    elapsed = time.monotonic() - started
    if cached and quiet:
        return
    verb = "is up to date" if cached else "built"
    console.print(
        f"template [bold]{name}[/bold] {verb}: {path} ({_size(size)}, {_duration(elapsed)})", soft_wrap=True
    )


@app.command("list")
def list_command(cache_dir: CacheDir = None, spec_dir: SpecDirs = None) -> None:
    """List templates: built ones and those that have a spec.

    Example:
        $ sandlot template list
    """
    settings = _settings(cache_dir)
    table = Table("name", "digest", "status", "built at", "size", box=box.SIMPLE_HEAD)
    for column in table.columns[:2]:
        column.no_wrap = True
    problems = []
    for info in builder.list_templates(settings, spec_dir or []):
        if info.spec_error:
            status = "[red]bad spec[/red]"
            problems.append(info.spec_error)
        elif info.digest is None:
            status = "[yellow]not built[/yellow]"
        elif info.up_to_date:
            status = "[green]up to date[/green]"
        else:
            status = f"[yellow]outdated[/yellow] (spec is now {info.spec_digest})"
        table.add_row(
            info.name,
            info.digest or "-",
            status,
            info.built_at.strftime("%Y-%m-%d %H:%M") if info.built_at else "-",
            _size(info.size_bytes) if info.size_bytes is not None else "-",
        )
    console.print(table)
    for problem in problems:
        errors.print(f"[red]error:[/red] {escape(problem)}", soft_wrap=True)


class _StepProgress:
    """One Rich progress bar per build step, fed by the builder's ``progress(step, fraction)``."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<16}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {
            step: self.progress.add_task(_STEP_LABELS.get(step, step), total=1.0, start=False)
            for step in builder.STEPS
        }

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:  # keep the steps that ran: the last one is where it failed
            for task in self.progress.tasks:
                if not task.started:
                    self.progress.update(task.id, visible=False)
        self.progress.stop()

    def update(self, step: str, fraction: float) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=1.0)
        task = self.tasks[step]
        if not self.progress.tasks[task].started:
            self.progress.start_task(task)
        self.progress.update(task, completed=fraction)
        if fraction >= 1.0:
            self.progress.stop_task(task)


def _settings(cache_dir: Path | None) -> config.RuntimeSettings:
    try:
        return config.Settings.from_env(cache_dir=cache_dir).runtime
    except ValueError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None


def _fail(exc: spec.TemplateError) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    if isinstance(exc, spec.CommandError):
        if exc.output_tail:
            errors.print(escape(exc.output_tail), style="dim", highlight=False, soft_wrap=True)
        if exc.log_path is not None:
            errors.print(f"full log: {exc.log_path}", style="dim", soft_wrap=True)
    raise typer.Exit(1) from None


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
