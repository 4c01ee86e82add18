"""``sandlot sandbox``: create, inspect, use and kill sandboxes from a shell, through the sync SDK.

The server and key come from ``--api-url``/``--api-key`` or ``SANDLOT_API_URL``/``SANDLOT_API_KEY``.

Exit codes scripts can trust:

* ``0``: it worked.
* ``exec`` and ``logs`` exit with the command's own exit code (128+N would need the signal,
  which the wire does not carry; a command ended by a signal exits 137 here, like a shell).
* ``1``: sandlot failed (no server, bad key, no such sandbox...); one red line on stderr says why.
* ``2``: usage error (Typer's own, or a malformed ``k=v`` or ``ID:/path``).
* ``130``: interrupted with Ctrl-C.

``pause``, ``resume``, ``fork``, ``snapshot`` and ``restart`` manage a sandbox's lifetime:
pause keeps memory (the processes go on after ``resume``, or after ``exec``/``shell`` on a
sandbox created ``--auto-resume``); ``fork`` prints one new id per line; ``snapshot`` prints
the snapshot's id, which ``create --template`` takes (``sandlot snapshot list`` shows them).
Pausing a paused sandbox and resuming a running one change nothing and exit 0.

``logs ID PROCESS`` follows the live output of a process started in the background, named by
its pid or its tag (``exec --background --tag web ID -- ...``). The agent keeps no scrollback
(``process.Connect`` replays nothing), so it shows output from the moment it attaches until the
process ends, and then exits with the process's code; Ctrl-C detaches and leaves it running.

Example:
    $ id=$(sandlot sandbox create --metadata owner=me)
    $ sandlot sandbox exec "$id" -- python3 -c 'print(6 * 7)'
    42
    $ sandlot sandbox cp ./data.csv "$id":/home/user/data.csv
    $ sandlot sandbox pause "$id" && sandlot sandbox resume "$id"
    $ snap=$(sandlot sandbox snapshot "$id" --name warm)
    $ sandlot sandbox create --template "$snap"
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
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from sandlot import CommandExitError, ConnectionConfig, PtySize, Sandbox, SandlotError
from sandlot.cli import _client

__all__ = ["app"]

app = typer.Typer(help="Create, use and kill sandboxes.", no_args_is_help=True)

SIGNALLED_EXIT = 137  # what a shell reports for SIGKILL: the wire says "killed", not which signal
PROGRESS_THRESHOLD = 8 * 1024 * 1024  # a progress bar only for files that take a moment

SandboxId = Annotated[str, typer.Argument(help="The sandbox's id.", show_default=False)]
Timeout = Annotated[
    int | None, typer.Option("--timeout", help="Seconds it lives from now (server default: 300).", show_default=False)
]


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            _client.fail(f"{option} takes KEY=VALUE, not {value!r}", 2)
        out[key] = val
    return out


def _connect(sandbox_id: str, config: ConnectionConfig) -> Sandbox:
    return _client.sdk(lambda: Sandbox.connect(sandbox_id, config=config))


# ------------------------------------------------------------------------------ commands


@app.command("create")
def create_command(
    template: Annotated[str, typer.Option("--template", "-t", help="Template name, or a snapshot's id.")] = "base",
    timeout: Annotated[int | None, typer.Option("--timeout", help="Seconds it lives (server default: 300).")] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE label; repeatable.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for every process; repeatable.")
    ] = None,
    auto_pause: Annotated[
        bool, typer.Option("--auto-pause", help="Pause it at its timeout instead of killing it.")
    ] = False,
    auto_resume: Annotated[
        bool, typer.Option("--auto-resume", help="Resume it when paused on its first command or file request.")
    ] = False,
    idle_timeout: Annotated[
        int | None,
        typer.Option("--idle-timeout", help="Seconds without any request or command before its timeout action."),
    ] = None,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Create a sandbox and print its id (alone on stdout, for scripts).

    Example:
        $ sandlot sandbox create --template base --timeout 600 --metadata job=42 --env MODE=test
        $ sandlot sandbox create --template warm:v1 --auto-pause --auto-resume --idle-timeout 60
    """
    config = _client.config(api_url, api_key)
    meta, envs = _pairs(metadata, "--metadata"), _pairs(env, "--env")
    with _client.spinner(f"creating a sandbox from {template}"):
        sbx = _client.sdk(
            lambda: Sandbox.create(
                template,
                timeout=timeout,
                metadata=meta,
                envs=envs,
                auto_pause=auto_pause or None,
                auto_resume=auto_resume or None,
                idle_timeout=idle_timeout,
                config=config,
            )
        )
    sbx.close()
    _client.console.print(sbx.sandbox_id, highlight=False)


@app.command("list")
def list_command(
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE filter; repeatable.")
    ] = None,
    state: Annotated[str | None, typer.Option("--state", help="running or paused (default: both).")] = None,
    template: Annotated[str | None, typer.Option("--template", "-t", help="Only this template.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """List the team's sandboxes in a table.

    Example:
        $ sandlot sandbox list --metadata job=42 --state running
    """
    config = _client.config(api_url, api_key)
    meta = _pairs(metadata, "--metadata")
    found = _client.sdk(lambda: Sandbox.list(metadata=meta, state=state, template=template, limit=limit, config=config))
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
    _client.console.print(table)


@app.command("info")
def info_command(sandbox_id: SandboxId, api_url: _client.ApiUrl = None, api_key: _client.ApiKey = None) -> None:
    """Show one sandbox: state, template, times, limits, metadata.

    Example:
        $ sandlot sandbox info sbx1f2e
    """
    config = _client.config(api_url, api_key)
    info = _client.sdk(lambda: Sandbox.get_info(sandbox_id, config=config))
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
    if info.boot:
        rows.append(("boot", info.boot))
    if info.lifecycle:
        rows.append(("on timeout", info.lifecycle.on_timeout))
        rows.append(("auto-resume", "yes" if info.lifecycle.auto_resume else "no"))
    if info.idle_timeout:
        rows.append(("idle timeout", f"{info.idle_timeout} s"))
    rows += [(f"metadata {k}", v) for k, v in sorted(info.metadata.items())]
    for name, value in rows:
        table.add_row(name, escape(value))
    _client.console.print(table)


@app.command("kill")
def kill_command(sandbox_id: SandboxId, api_url: _client.ApiUrl = None, api_key: _client.ApiKey = None) -> None:
    """Kill a sandbox now. Exits 1 if there was no such sandbox.

    Example:
        $ sandlot sandbox kill sbx1f2e
    """
    config = _client.config(api_url, api_key)
    if not _client.sdk(lambda: Sandbox.kill(sandbox_id, config=config)):
        _client.fail(f"no sandbox {sandbox_id}")
    _client.errors.print(f"killed {escape(sandbox_id)}", highlight=False)


@app.command("pause")
def pause_command(sandbox_id: SandboxId, api_url: _client.ApiUrl = None, api_key: _client.ApiKey = None) -> None:
    """Pause a sandbox, keeping its memory: it costs disk only until it is resumed.

    A paused sandbox has no timer. Streams attached to its processes (an `exec` or `logs`
    still following one) end; the processes go on after `resume`.

    Example:
        $ sandlot sandbox pause sbx1f2e
    """
    config = _client.config(api_url, api_key)
    with _client.spinner(f"pausing {sandbox_id}"):
        paused = _client.sdk(lambda: Sandbox.pause(sandbox_id, config=config))
    _client.errors.print(f"paused {escape(sandbox_id)}" if paused else f"{escape(sandbox_id)} was already paused")


@app.command("resume")
def resume_command(
    sandbox_id: SandboxId, timeout: Timeout = None, api_url: _client.ApiUrl = None, api_key: _client.ApiKey = None
) -> None:
    """Resume a paused sandbox: its processes go on where they were.

    Example:
        $ sandlot sandbox resume sbx1f2e --timeout 600
    """
    config = _client.config(api_url, api_key)
    with _client.spinner(f"resuming {sandbox_id}"):
        resumed = _client.sdk(lambda: Sandbox.resume(sandbox_id, timeout, config=config))
    _client.errors.print(f"resumed {escape(sandbox_id)}" if resumed else f"{escape(sandbox_id)} was already running")


@app.command("fork")
def fork_command(
    sandbox_id: SandboxId,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="How many copies.")] = 1,
    timeout: Timeout = None,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Copy a running sandbox, memory and files; print each copy's id on a line of its own.

    Example:
        $ sandlot sandbox fork sbx1f2e --count 3 --timeout 600
    """
    config = _client.config(api_url, api_key)
    with _client.spinner(f"forking {sandbox_id}" + (f" into {count} copies" if count > 1 else "")):
        children = _client.sdk(lambda: Sandbox.fork(sandbox_id, count, timeout=timeout, config=config))
    for child in children:
        child.close()
        _client.console.print(child.sandbox_id)


@app.command("snapshot")
def snapshot_command(
    sandbox_id: SandboxId,
    name: Annotated[str | None, typer.Option("--name", help="The snapshot's name (default: snap-<random>).")] = None,
    memory: Annotated[
        bool, typer.Option("--memory/--no-memory", help="Keep the processes' memory, or only the files.")
    ] = True,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Snapshot a running sandbox and print the snapshot's id (name:tag), which create takes.

    The sandbox is frozen for a moment and goes on running.

    Example:
        $ sandlot sandbox snapshot sbx1f2e --name deps-installed
        deps-installed:v1
        $ sandlot sandbox create --template deps-installed:v1
    """
    config = _client.config(api_url, api_key)
    with _client.spinner(f"snapshotting {sandbox_id}"):
        snap = _client.sdk(lambda: Sandbox.create_snapshot(sandbox_id, name, memory=memory, config=config))
    _client.console.print(snap.snapshot_id)


@app.command("restart")
def restart_command(
    sandbox_id: SandboxId, timeout: Timeout = None, api_url: _client.ApiUrl = None, api_key: _client.ApiKey = None
) -> None:
    """Restart a sandbox from its files: every process ends and it boots clean.

    It picks up the template's current build and the server's current init. Works on a
    paused sandbox too (it comes back running).

    Example:
        $ sandlot sandbox restart sbx1f2e
    """
    config = _client.config(api_url, api_key)
    with _client.spinner(f"restarting {sandbox_id}"):
        _client.sdk(lambda: Sandbox.restart(sandbox_id, timeout, config=config))
    _client.errors.print(f"restarted {escape(sandbox_id)}")


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
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Run a command in a sandbox, streaming its output; exit with its exit code.

    A single argument is run as a shell line; several are quoted and joined.

    Example:
        $ sandlot sandbox exec sbx1f2e -- ls -la /tmp
        $ sandlot sandbox exec sbx1f2e -- 'cd /tmp && make'
        $ sandlot sandbox exec -d --tag web sbx1f2e -- python3 -m http.server
    """
    config = _client.config(api_url, api_key)
    envs = _pairs(env, "--env")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _client.fail("give a command after --", 2)
    line = command[0] if len(command) == 1 else shlex.join(command)
    sbx = _connect(sandbox_id, config)
    try:
        if background:
            handle = _client.sdk(
                lambda: sbx.commands.run(line, background=True, envs=envs, cwd=cwd, user=user, tag=tag, timeout=timeout)
            )
            _client.console.print(handle.pid, highlight=False)
            _client.sdk(handle.disconnect)
            return
        try:
            _client.sdk(
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
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Follow the live output of a background process until it ends; exit with its exit code.

    Output is shown from the moment of attaching (the sandbox keeps no scrollback). Ctrl-C
    detaches and leaves the process running.

    Example:
        $ sandlot sandbox exec -d --tag web sbx1f2e -- python3 -m http.server
        $ sandlot sandbox logs sbx1f2e web
    """
    config = _client.config(api_url, api_key)
    target: int | str = int(process) if process.isdigit() else process
    sbx = _connect(sandbox_id, config)
    try:
        handle = _client.sdk(
            lambda: sbx.commands.connect(target, on_stdout=_writer(sys.stdout), on_stderr=_writer(sys.stderr))
        )
        try:
            _client.sdk(handle.wait)
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
def ps_command(sandbox_id: SandboxId, api_url: _client.ApiUrl = None, api_key: _client.ApiKey = None) -> None:
    """List the processes started in a sandbox through sandlot.

    Example:
        $ sandlot sandbox ps sbx1f2e
    """
    config = _client.config(api_url, api_key)
    sbx = _connect(sandbox_id, config)
    try:
        found = _client.sdk(sbx.commands.list)
    finally:
        sbx.close()
    table = Table("pid", "tag", "command", box=box.SIMPLE_HEAD)
    for proc in found:
        table.add_row(str(proc.pid), escape(proc.tag or ""), escape(shlex.join([proc.cmd, *proc.args])))
    _client.console.print(table)


@app.command("shell")
def shell_command(
    sandbox_id: SandboxId,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Linux user (default: user).")] = None,
    cwd: Annotated[str | None, typer.Option("--cwd", help="Working directory.")] = None,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Open an interactive terminal in a sandbox; exit with the shell's exit code.

    The local terminal is put in raw mode (keys go to the sandbox as typed, Ctrl-C included),
    window size changes are forwarded, and the terminal is restored when the shell exits.

    Example:
        $ sandlot sandbox shell sbx1f2e --user root
    """
    config = _client.config(api_url, api_key)
    if not sys.stdin.isatty():
        _client.fail("shell needs a terminal on stdin; use `exec` for scripts", 2)
    sbx = _connect(sandbox_id, config)
    try:
        code = _client.sdk(lambda: _shell(sbx, user=user, cwd=cwd))
    finally:
        sbx.close()
    raise typer.Exit(code)


@app.command("cp")
def cp_command(
    source: Annotated[str, typer.Argument(help="LOCAL_PATH or ID:/path.", show_default=False)],
    destination: Annotated[str, typer.Argument(help="LOCAL_PATH or ID:/path.", show_default=False)],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Linux user in the sandbox.")] = None,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Copy a file into or out of a sandbox (exactly one side is ID:/path), streaming.

    A destination ending in / (or an existing local directory) keeps the source's name.

    Example:
        $ sandlot sandbox cp model.bin sbx1f2e:/home/user/
        $ sandlot sandbox cp sbx1f2e:/tmp/out.tar ./out.tar
    """
    config = _client.config(api_url, api_key)
    src, dst = _remote(source), _remote(destination)
    if (src is None) == (dst is None):
        _client.fail("cp copies between this machine and a sandbox: give exactly one ID:/path", 2)
    if dst is not None:  # upload
        local = Path(source)
        if not local.is_file():
            _client.fail(f"{source}: not a file")
        sandbox_id, path = dst
        if path.endswith("/"):
            path += local.name
        size = local.stat().st_size
        sbx = _connect(sandbox_id, config)
        try:
            with _progress(size, local.name) as advance:
                info = _client.sdk(lambda: sbx.files.upload(local, path, user=user, on_progress=advance))
        finally:
            sbx.close()
        copied = f"{escape(str(local))} -> {escape(sandbox_id)}:{escape(info.path)} ({size} bytes)"
        _client.errors.print(copied, highlight=False)
        return
    assert src is not None
    sandbox_id, path = src
    target = Path(destination)
    if destination.endswith("/") or target.is_dir():
        target = target / Path(path).name
    sbx = _connect(sandbox_id, config)
    try:
        entry = _client.sdk(lambda: sbx.files.get_info(path, user=user))
        with _progress(entry.size, Path(path).name) as advance:
            done = _client.sdk(lambda: sbx.files.download(path, target, user=user, on_progress=advance))
    finally:
        sbx.close()
    copied = f"{escape(sandbox_id)}:{escape(path)} -> {escape(str(target))} ({done} bytes)"
    _client.errors.print(copied, highlight=False)


# ------------------------------------------------------------------------------- helpers


def _remote(spec: str) -> tuple[str, str] | None:
    """``ID:/path`` → (id, path); a local path (no colon before the first slash) → None."""
    head, sep, tail = spec.partition(":")
    if not sep or "/" in head or not head:
        return None
    if not tail:
        _client.fail(f"{spec}: give a path after the colon", 2)
    return head, tail


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    if total < PROGRESS_THRESHOLD or not _client.errors.is_terminal:
        yield lambda done: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=_client.errors,
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
