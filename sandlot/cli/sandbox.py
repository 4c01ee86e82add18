"""``sandlot sandbox``: create, inspect, use and kill sandboxes from a shell, through the sync SDK.

The server and key come from ``--api-url``/``--api-key`` or ``SANDLOT_API_URL``/``SANDLOT_API_KEY``.

Exit codes scripts can trust:

* ``0``: it worked.
* ``exec`` and ``logs`` exit with the command's own exit code (128+N would need the signal,
  which the wire does not carry; a command ended by a signal exits 137 here, like a shell).
* ``1``: sandlot failed (no server, bad key, no such sandbox...); one red line on stderr says why.
* ``2``: usage error (Typer's own, or a malformed ``k=v`` or ``ID:/path``).
* ``130``: interrupted with Ctrl-C.

``logs ID PROCESS`` follows the live output of a process started in the background, named by
its pid or its tag (``exec --background --tag web ID -- ...``). The agent keeps no scrollback
(``process.Connect`` replays nothing), so it shows output from the moment it attaches until the
process ends, and then exits with the process's code; Ctrl-C detaches and leaves it running.

Example:
    $ id=$(sandlot sandbox create --metadata owner=me)
    $ sandlot sandbox exec "$id" -- python3 -c 'print(6 * 7)'
    42
    $ sandlot sandbox cp ./data.csv "$id":/home/user/data.csv
    $ sandlot sandbox kill "$id"
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from sandlot import (
    CommandExitError,
    ConnectionConfig,
    PtySize,
    Sandbox,
    SandlotError,
)

__all__ = ["app"]

app = typer.Typer(help="Create, use and kill sandboxes.", no_args_is_help=True)

console = Console()
errors = Console(stderr=True)

SIGNALLED_EXIT = 137  # what a shell reports for SIGKILL: the wire says "killed", not which signal
PROGRESS_THRESHOLD = 8 * 1024 * 1024  # a progress bar only for files that take a moment

T = TypeVar("T")

ApiUrl = Annotated[
    str | None, typer.Option("--api-url", envvar="SANDLOT_API_URL", help="Server (default: http://127.0.0.1:3000).")
]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="SANDLOT_API_KEY", help="Team API key.", show_default=False)]
SandboxId = Annotated[str, typer.Argument(help="The sandbox's id.", show_default=False)]


def _config(api_url: str | None, api_key: str | None) -> ConnectionConfig:
    return _sdk(lambda: ConnectionConfig.from_env(api_url=api_url, api_key=api_key))


def _fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _sdk(call: Callable[[], T]) -> T:
    """Run an SDK call, turning its errors into one red line and exit status 1."""
    try:
        return call()
    except CommandExitError:
        raise  # the command's own failure: the caller exits with its code
    except SandlotError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            _fail(f"{option} takes KEY=VALUE, not {value!r}", 2)
        out[key] = val
    return out


def _connect(sandbox_id: str, config: ConnectionConfig) -> Sandbox:
    return _sdk(lambda: Sandbox.connect(sandbox_id, config=config))


# ------------------------------------------------------------------------------ commands


@app.command("create")
def create_command(
    template: Annotated[str, typer.Option("--template", "-t", help="Template name.")] = "base",
    timeout: Annotated[int | None, typer.Option("--timeout", help="Seconds it lives (server default: 300).")] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE label; repeatable.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for every process; repeatable.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create a sandbox and print its id (alone on stdout, for scripts).

    Example:
        $ sandlot sandbox create --template base --timeout 600 --metadata job=42 --env MODE=test
    """
    config = _config(api_url, api_key)
    meta, envs = _pairs(metadata, "--metadata"), _pairs(env, "--env")
    sbx = _sdk(lambda: Sandbox.create(template, timeout=timeout, metadata=meta, envs=envs, config=config))
    sbx.close()
    console.print(sbx.sandbox_id, highlight=False)


@app.command("list")
def list_command(
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE filter; repeatable.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="running or paused (default: both).")] = None,
    template: Annotated[str | None, typer.Option("--template", "-t", help="Only this template.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List the team's sandboxes in a table.

    Example:
        $ sandlot sandbox list --metadata job=42 --state running
    """
    config = _config(api_url, api_key)
    meta = _pairs(metadata, "--metadata")
    found = _sdk(lambda: Sandbox.list(metadata=meta, state=state, template=template, limit=limit, config=config))
    table = Table("id", "template", "state", "started", "ends", "metadata", box=box.SIMPLE_HEAD)
    table.columns[0].no_wrap = True
    for info in found:
        table.add_row(
            info.sandbox_id,
            info.template_id,
            "[green]running[/green]" if info.state == "running" else f"[yellow]{info.state}[/yellow]",
            info.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            info.end_at.astimezone().strftime("%H:%M:%S"),
            escape(" ".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))),
        )
    console.print(table)


@app.command("info")
def info_command(sandbox_id: SandboxId, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Show one sandbox: state, template, times, limits, metadata.

    Example:
        $ sandlot sandbox info sbx1f2e
    """
    config = _config(api_url, api_key)
    info = _sdk(lambda: Sandbox.get_info(sandbox_id, config=config))
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", info.sandbox_id),
        ("template", info.template_id),
        ("state", info.state),
        ("started", info.started_at.astimezone().isoformat(timespec="seconds")),
        ("ends", info.end_at.astimezone().isoformat(timespec="seconds")),
        ("cpus", str(info.cpu_count)),
        ("memory", f"{info.memory_mb} MiB"),
        ("disk", f"{info.disk_size_mb} MiB"),
        ("envd", info.envd_version),
    ]
    rows += [(f"metadata {k}", v) for k, v in sorted(info.metadata.items())]
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table)


@app.command("kill")
def kill_command(sandbox_id: SandboxId, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Kill a sandbox now. Exits 1 if there was no such sandbox.

    Example:
        $ sandlot sandbox kill sbx1f2e
    """
    config = _config(api_url, api_key)
    if not _sdk(lambda: Sandbox.kill(sandbox_id, config=config)):
        _fail(f"no sandbox {sandbox_id}")
    errors.print(f"killed {escape(sandbox_id)}", highlight=False)


@app.command("exec")
def exec_command(
    sandbox_id: SandboxId,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).", show_default=False)],
    cwd: Annotated[str | None, typer.Option("--cwd", help="Working directory.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Linux user (default: user).")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE; repeatable.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before the command is killed; 0: never.")] = 0,
    background: Annotated[
        bool, typer.Option("--background", "-d", help="Start it, print its pid, and leave it running.")
    ] = False,
    tag: Annotated[str | None, typer.Option("--tag", help="Name the process, for `logs ID TAG`.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Run a command in a sandbox, streaming its output; exit with its exit code.

    A single argument is run as a shell line; several are quoted and joined.

    Example:
        $ sandlot sandbox exec sbx1f2e -- ls -la /tmp
        $ sandlot sandbox exec sbx1f2e -- 'cd /tmp && make'
        $ sandlot sandbox exec -d --tag web sbx1f2e -- python3 -m http.server
    """
    config = _config(api_url, api_key)
    envs = _pairs(env, "--env")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _fail("give a command after --", 2)
    line = command[0] if len(command) == 1 else shlex.join(command)
    sbx = _connect(sandbox_id, config)
    try:
        if background:
            handle = _sdk(
                lambda: sbx.commands.run(line, background=True, envs=envs, cwd=cwd, user=user, tag=tag, timeout=timeout)
            )
            console.print(handle.pid, highlight=False)
            _sdk(handle.disconnect)
            return
        try:
            _sdk(
                lambda: sbx.commands.run(
                    line,
                    envs=envs,
                    cwd=cwd,
                    user=user,
                    timeout=timeout,
                    on_stdout=_writer(sys.stdout),
                    on_stderr=_writer(sys.stderr),
                )
            )
        except CommandExitError as exc:
            raise typer.Exit(_exit_status(exc.exit_code)) from None
    finally:
        sbx.close()


@app.command("logs")
def logs_command(
    sandbox_id: SandboxId,
    process: Annotated[str, typer.Argument(help="The process: its pid, or the tag it was started with.")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Follow the live output of a background process until it ends; exit with its exit code.

    Output is shown from the moment of attaching (the sandbox keeps no scrollback). Ctrl-C
    detaches and leaves the process running.

    Example:
        $ sandlot sandbox exec -d --tag web sbx1f2e -- python3 -m http.server
        $ sandlot sandbox logs sbx1f2e web
    """
    config = _config(api_url, api_key)
    target: int | str = int(process) if process.isdigit() else process
    sbx = _connect(sandbox_id, config)
    try:
        handle = _sdk(
            lambda: sbx.commands.connect(target, on_stdout=_writer(sys.stdout), on_stderr=_writer(sys.stderr))
        )
        try:
            _sdk(handle.wait)
        except CommandExitError as exc:
            raise typer.Exit(_exit_status(exc.exit_code)) from None
        except typer.Exit as exc:
            if exc.exit_code == 130:
                with contextlib.suppress(SandlotError):
                    handle.disconnect()
            raise
    finally:
        sbx.close()


@app.command("ps")
def ps_command(sandbox_id: SandboxId, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """List the processes started in a sandbox through sandlot.

    Example:
        $ sandlot sandbox ps sbx1f2e
    """
    config = _config(api_url, api_key)
    sbx = _connect(sandbox_id, config)
    try:
        found = _sdk(sbx.commands.list)
    finally:
        sbx.close()
    table = Table("pid", "tag", "command", box=box.SIMPLE_HEAD)
    for proc in found:
        table.add_row(str(proc.pid), escape(proc.tag or ""), escape(shlex.join([proc.cmd, *proc.args])))
    console.print(table)


@app.command("shell")
def shell_command(
    sandbox_id: SandboxId,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Linux user (default: user).")] = None,
    cwd: Annotated[str | None, typer.Option("--cwd", help="Working directory.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Open an interactive terminal in a sandbox; exit with the shell's exit code.

    The local terminal is put in raw mode (keys go to the sandbox as typed, Ctrl-C included),
    window size changes are forwarded, and the terminal is restored when the shell exits.

    Example:
        $ sandlot sandbox shell sbx1f2e --user root
    """
    config = _config(api_url, api_key)
    if not sys.stdin.isatty():
        _fail("shell needs a terminal on stdin; use `exec` for scripts", 2)
    sbx = _connect(sandbox_id, config)
    try:
        code = _sdk(lambda: _shell(sbx, user=user, cwd=cwd))
    finally:
        sbx.close()
    raise typer.Exit(code)


@app.command("cp")
def cp_command(
    source: Annotated[str, typer.Argument(help="LOCAL_PATH or ID:/path.", show_default=False)],
    destination: Annotated[str, typer.Argument(help="LOCAL_PATH or ID:/path.", show_default=False)],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Linux user in the sandbox.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Copy a file into or out of a sandbox (exactly one side is ID:/path), streaming.

    A destination ending in / (or an existing local directory) keeps the source's name.

    Example:
        $ sandlot sandbox cp model.bin sbx1f2e:/home/user/
        $ sandlot sandbox cp sbx1f2e:/tmp/out.tar ./out.tar
    """
    config = _config(api_url, api_key)
    src, dst = _remote(source), _remote(destination)
    if (src is None) == (dst is None):
        _fail("cp copies between this machine and a sandbox: give exactly one ID:/path", 2)
    if dst is not None:  # upload
        local = Path(source)
        if not local.is_file():
            _fail(f"{source}: not a file")
        sandbox_id, path = dst
        if path.endswith("/"):
            path += local.name
        size = local.stat().st_size
        sbx = _connect(sandbox_id, config)
        try:
            with _progress(size, local.name) as advance:
                info = _sdk(lambda: sbx.files.upload(local, path, user=user, on_progress=advance))
        finally:
            sbx.close()
        errors.print(f"{escape(str(local))} -> {escape(sandbox_id)}:{escape(info.path)} ({size} bytes)", highlight=False)
        return
    assert src is not None
    sandbox_id, path = src
    target = Path(destination)
    if destination.endswith("/") or target.is_dir():
        target = target / Path(path).name
    sbx = _connect(sandbox_id, config)
    try:
        entry = _sdk(lambda: sbx.files.get_info(path, user=user))
        with _progress(entry.size, Path(path).name) as advance:
            done = _sdk(lambda: sbx.files.download(path, target, user=user, on_progress=advance))
    finally:
        sbx.close()
    errors.print(f"{escape(sandbox_id)}:{escape(path)} -> {escape(str(target))} ({done} bytes)", highlight=False)


# ------------------------------------------------------------------------------- helpers


def _remote(spec: str) -> tuple[str, str] | None:
    """``ID:/path`` → (id, path); a local path (no colon before the first slash) → None."""
    head, sep, tail = spec.partition(":")
    if not sep or "/" in head or not head:
        return None
    if not tail:
        _fail(f"{spec}: give a path after the colon", 2)
    return head, tail


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    if total < PROGRESS_THRESHOLD or not errors.is_terminal:
        yield lambda done: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=errors,
        transient=True,
    ) as progress:
        task = progress.add_task(escape(label), total=total)
        yield lambda done: progress.update(task, completed=done)


def _writer(stream: object) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)  # type: ignore[attr-defined]
        stream.flush()  # type: ignore[attr-defined]

    return write


def _exit_status(code: int) -> int:
    return SIGNALLED_EXIT if code < 0 else code


def _shell(sbx: Sandbox, *, user: str | None, cwd: str | None) -> int:
    """Run a PTY session wired to this terminal; returns the shell's exit status."""
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    cols, rows = os.get_terminal_size(stdout_fd)
    done = threading.Event()

    def output(data: bytes) -> None:
        os.write(stdout_fd, data)

    terminal = sbx.pty.create(PtySize(cols=cols, rows=rows), on_data=output, user=user, cwd=cwd)

    def resize(*_: object) -> None:
        with contextlib.suppress(OSError, SandlotError):
            c, r = os.get_terminal_size(stdout_fd)
            sbx.pty.resize(terminal.pid, PtySize(cols=c, rows=r))

    def wait() -> None:
        with contextlib.suppress(BaseException):
            terminal.wait()
        done.set()
        os.write(wake_w, b"x")  # unblock the input loop

    saved = termios.tcgetattr(stdin_fd)
    old_winch = signal.signal(signal.SIGWINCH, resize)
    wake_r, wake_w = os.pipe()
    threading.Thread(target=wait, name="sandlot-shell-wait", daemon=True).start()
    try:
        tty.setraw(stdin_fd)
        while not done.is_set():
            readable, _, _ = select.select([stdin_fd, wake_r], [], [])
            if stdin_fd in readable:
                data = os.read(stdin_fd, 4096)
                if not data:
                    break
                sbx.pty.send_input(terminal.pid, data)
    finally:
        termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        os.close(wake_r)
        os.close(wake_w)
    try:
        result = terminal.wait()
    except CommandExitError as exc:
        return _exit_status(exc.exit_code)
    return result.exit_code
