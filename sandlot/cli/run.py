"""``sandlot run FILE``: run a program once in a fresh sandbox (``POST /execute``), like running it here.

The program's stdout goes to stdout and its stderr to stderr, as they came; a compiler's
output goes to stderr before them. A run that ended for a reason the program did not choose
(a limit, a signal) adds one ``sandlot:`` line on stderr saying so. The language comes from the
file's extension (``.py``, ``.js``, ``.ts``, ``.rs``, ``.sh``...; for another one the server's
language aliases are asked) unless ``--lang`` names it.

Exit codes, chosen so that a script can tell the program's own failure from sandlot's:

* the program's own exit code (0-255) when it ran to its end;
* ``128+N`` when signal N ended it (``139`` for a segmentation fault), as a shell reports it;
* ``124``: it was stopped at its time limit (wall clock or CPU), as GNU ``timeout`` exits;
* ``137``: it was killed for going over its memory limit, as Docker and Kubernetes report an
  OOM kill (128 + SIGKILL);
* ``141``: it was stopped for printing more than the output limit, as ``yes | head`` ends
  ``yes`` (128 + SIGPIPE: the reader stopped reading); what it printed up to the limit is shown;
* ``65``: it did not compile (``EX_DATAERR`` of sysexits.h: the input was wrong); the
  compiler's message is on stderr;
* ``75``: the server stayed busy (429 through every retry of the SDK, each after its
  ``Retry-After``, or 503: no runner became free in time); ``EX_TEMPFAIL``: try again later;
* ``125``: sandlot itself failed (no server, bad key, unknown language, a refused request), as
  ``docker run`` exits when the fault is not the program's; one red line on stderr says why;
* ``2``: a usage error (a missing file, an extension with no known language);
* ``130``: interrupted with Ctrl-C.

A program whose output was cut but that was not stopped for it (a compile stage's) keeps its
exit code; the ``sandlot:`` line says the output was cut. ``--json`` prints the whole result instead (both
stages, times, memory) and exits the same way.

Example:
    $ sandlot run hello.py
    hello
    $ sandlot run solve.rs --stdin tests/1.in --timeout 2 -- --verbose
    $ echo $?
    0
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sandlot import (
    ExecuteResult,
    Executor,
    RateLimitedError,
    SandlotError,
    StageStatus,
    UnavailableError,
)
from sandlot.cli import _client

__all__ = ["EXIT", "EXTENSIONS", "exit_status", "run"]

#: Exit statuses of ``sandlot run`` other than the program's own (see the module docstring).
EXIT = {
    "timeout": 124,
    "oom": 137,
    "output_limit": 141,
    "compile_error": 65,
    "busy": 75,
    "sandlot": 125,
    "usage": 2,
    "interrupted": 130,
}

#: File extension -> the language ``POST /execute`` is asked for.
EXTENSIONS = {
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".rs": "rust",
    ".sh": "bash",
    ".bash": "bash",
}


def exit_status(result: ExecuteResult) -> int:
    """The exit status of ``sandlot run`` for a result (see the module docstring).

    Example:
        >>> exit_status(sandlot.execute("import sys; sys.exit(4)", language="python"))
        4
    """
    stage = result.stage
    if stage.status == StageStatus.COMPILE_ERROR:
        return EXIT["compile_error"]
    if stage.status == StageStatus.TIMEOUT:
        return EXIT["timeout"]
    if stage.status == StageStatus.OOM:
        return EXIT["oom"]
    if stage.status == StageStatus.OUTPUT_LIMIT:
        return EXIT["output_limit"]
    if stage.exit_code is not None:
        return stage.exit_code & 0xFF
    if stage.signal:
        try:
            return 128 + signal.Signals[stage.signal].value
        except KeyError:
            pass
    return 128 + signal.SIGKILL.value  # ended without an exit code or a signal we can name


def run(
    file: Annotated[Path, typer.Argument(help="The program; its extension names the language.", show_default=False)],
    args: Annotated[
        list[str] | None, typer.Argument(help="The program's arguments (after --).", show_default=False)
    ] = None,
    lang: Annotated[
        str | None, typer.Option("--lang", "-l", help="The language (default: from the extension).")
    ] = None,
    version: Annotated[str | None, typer.Option("--version", help="A version of the language.")] = None,
    stdin: Annotated[
        str | None, typer.Option("--stdin", help="A file to feed the program's stdin; - for this one's.")
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Wall-clock seconds (server default: 10).")] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="Memory limit in MiB.")] = None,
    extra: Annotated[
        list[Path] | None,
        typer.Option("--file", "-f", help="Another file beside it (a module it imports); repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    api_url: _client.ApiUrl = None,
    api_key: _client.ApiKey = None,
) -> None:
    """Run a program once in a fresh sandbox; print its output and exit with its exit code.

    Timeout 124, out of memory 137, output limit 141, compile error 65, server busy 75,
    sandlot failed 125.

    Example:
        $ sandlot run hello.py
        $ sandlot run main.rs --stdin input.txt --timeout 5 -- arg1 arg2
        $ sandlot run app.py --file util.py --lang python --version 3.11
    """
    config = _client.config(api_url, api_key, EXIT["sandlot"])
    files = {file.name: _read(file)}
    for path in extra or []:
        if path.name in files:
            _client.fail(f"two files named {path.name}", EXIT["usage"])
        files[path.name] = _read(path)
    stdin_text = None
    if stdin == "-":
        stdin_text = sys.stdin.read()
    elif stdin is not None:
        stdin_text = _text(Path(stdin), "--stdin")
    if args and args[0] == "--":
        args = args[1:]
    try:
        with Executor(config=config) as executor:
            language = lang or _language(file, executor)
            with _client.spinner(f"running {file.name} ({language})"):
                result = executor.execute(
                    language=language,
                    version=version,
                    files=files,
                    stdin=stdin_text,
                    args=args or None,
                    timeout=timeout,
                    memory_mb=memory,
                )
    except RateLimitedError as exc:
        _client.fail(f"{exc}: the server stayed busy through {config.retries} retries; try again later", EXIT["busy"])
    except UnavailableError as exc:
        _client.fail(str(exc), EXIT["busy"] if exc.status == 503 else EXIT["sandlot"])
    except SandlotError as exc:
        _client.fail(str(exc), EXIT["sandlot"])
    except KeyboardInterrupt:
        _client.errors.print("[red]interrupted[/red]")
        raise typer.Exit(EXIT["interrupted"]) from None
    if as_json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        _show(result)
    raise typer.Exit(exit_status(result))


def _read(path: Path) -> str | bytes:
    """A program file's content: text when it is UTF-8, bytes (sent base64-encoded) otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        _client.fail(f"{path}: {exc.strerror}", EXIT["usage"])
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def _text(path: Path, option: str) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        _client.fail(f"{option} {path}: {exc.strerror}", EXIT["usage"])


def _language(file: Path, executor: Executor) -> str:
    """The language of ``file`` by its extension: the table first, then the server's aliases."""
    suffix = file.suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    known = executor.languages()
    for language in known:
        if suffix and suffix[1:] in (language.language, *language.aliases):
            return language.language
    names = ", ".join(sorted(lang.language for lang in known)) or "none"
    _client.fail(f"cannot tell the language of {file.name} from its extension: give --lang ({names})", EXIT["usage"])


def _show(result: ExecuteResult) -> None:
    """Print what the program printed, then one line on why it ended if it did not end by itself."""
    if result.compile is not None:
        _write(sys.stderr, result.compile.stdout + result.compile.stderr)
    if result.run is not None:
        _write(sys.stdout, result.run.stdout)
        _write(sys.stderr, result.run.stderr)
    note = _note(result)
    if note:
        _client.errors.print(f"[yellow]sandlot:[/yellow] {escape(note)}")


def _note(result: ExecuteResult) -> str | None:
    stage = result.stage
    status = stage.status
    reasons = {
        StageStatus.COMPILE_ERROR: f"{result.language} {result.version} did not compile it",
        StageStatus.TIMEOUT: f"stopped at its time limit after {stage.wall_ms / 1000:.1f} s",
        StageStatus.OOM: f"killed for going over its memory limit ({stage.memory_peak_kb // 1024} MiB at its peak)",
        StageStatus.OUTPUT_LIMIT: "stopped for printing more than the output limit",
    }
    parts = []
    if status in reasons:
        parts.append(reasons[status])  # type: ignore[index]
    elif stage.exit_code is None and stage.signal:
        parts.append(f"killed by {stage.signal}")
    elif status not in (StageStatus.OK, StageStatus.RUNTIME_ERROR):
        parts.append(f"ended with status {status}")
    if stage.truncated or (result.compile is not None and result.compile.truncated):
        parts.append("output cut at the limit")
    return "; ".join(parts) or None


def _write(stream: object, text: str) -> None:
    if text:
        stream.write(text)  # type: ignore[attr-defined]
        stream.flush()  # type: ignore[attr-defined]
