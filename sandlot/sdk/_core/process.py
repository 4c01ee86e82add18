"""``process.Process`` calls: request messages and the events of a process stream, no I/O.

A process stream (``Start`` or ``Connect``) is a ``start`` event with the pid, then ``data``
and ``keepalive`` events, then exactly one ``end`` event, then the end of the stream
(docs/e2b-wire.md §5.3). :class:`OutputCollector` accumulates what a stream delivers and
decodes stdout and stderr incrementally, so a UTF-8 character cut between two chunks is not
turned into two replacement characters.

Example:
    >>> start_request("echo hi")["process"]["args"]
    ['-l', '-c', 'echo hi']
    >>> parse_event({"event": {"data": {"stdout": "aGkK"}}})
    DataEvent(stdout=b'hi\\n', stderr=None, pty=None)
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Mapping
from typing import Any

from sandlot.sdk import exceptions
from sandlot.sdk._core import connect, models

__all__ = [
    "DataEvent",
    "EndEvent",
    "KeepaliveEvent",
    "OutputCollector",
    "StartEvent",
    "connect_request",
    "parse_event",
    "parse_process_list",
    "pty_request",
    "selector",
    "send_input_request",
    "signal_request",
    "start_request",
    "update_request",
]

SERVICE = "process.Process"
SHELL = "/bin/bash"


def path(method: str) -> str:
    """The URL path of an RPC of this service.

    Example:
        >>> path("Start")
        '/process.Process/Start'
    """
    return f"/{SERVICE}/{method}"


def selector(process: int | str) -> dict[str, Any]:
    """A ``ProcessSelector``: an int is a pid, a str is a tag.

    Example:
        >>> selector(42), selector("web")
        ({'pid': 42}, {'tag': 'web'})
    """
    if isinstance(process, bool) or not isinstance(process, (int, str)):
        raise exceptions.InvalidArgumentError(f"a process is a pid (int) or a tag (str), not {process!r}")
    if isinstance(process, int):
        if process <= 0:
            raise exceptions.InvalidArgumentError(f"invalid pid {process}")
        return {"pid": process}
    return {"tag": process}


def _config(cmd: str, args: list[str], envs: Mapping[str, str] | None, cwd: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"cmd": cmd, "args": args}
    if envs:
        config["envs"] = dict(envs)
    if cwd is not None:
        config["cwd"] = cwd
    return config


def start_request(
    cmd: str,
    *,
    envs: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: bool = False,
    tag: str | None = None,
) -> dict[str, Any]:
    """``StartRequest`` for a shell command: ``/bin/bash -l -c CMD``, as the e2b SDK sends it.

    Example:
        >>> start_request("ls", cwd="/tmp", tag="t")
        {'process': {'cmd': '/bin/bash', 'args': ['-l', '-c', 'ls'], 'cwd': '/tmp'}, 'stdin': False, 'tag': 't'}
    """
    message: dict[str, Any] = {"process": _config(SHELL, ["-l", "-c", cmd], envs, cwd), "stdin": stdin}
    if tag is not None:
        message["tag"] = tag
    return message


def pty_request(
    size: models.PtySize,
    *,
    cmd: str | None = None,
    envs: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """``StartRequest`` for a terminal: an interactive login bash (or ``cmd`` in bash) on a PTY.

    Example:
        >>> pty_request(models.PtySize(100, 30))["pty"]
        {'size': {'cols': 100, 'rows': 30}}
    """
    env = {"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **(envs or {})}
    args = ["-i", "-l"] if cmd is None else ["-i", "-l", "-c", cmd]
    return {"process": _config(SHELL, args, env, cwd), "pty": _size(size)}


def _size(size: models.PtySize) -> dict[str, Any]:
    if size.cols <= 0 or size.rows <= 0:
        raise exceptions.InvalidArgumentError(f"invalid terminal size {size.cols}x{size.rows}")
    return {"size": {"cols": size.cols, "rows": size.rows}}


def connect_request(process: int | str) -> dict[str, Any]:
    """``ConnectRequest``.

    Example:
        >>> connect_request(7)
        {'process': {'pid': 7}}
    """
    return {"process": selector(process)}


def send_input_request(process: int | str, data: str | bytes, *, pty: bool = False) -> dict[str, Any]:
    """``SendInputRequest``: ``data`` (UTF-8 if a str) to stdin or to the terminal.

    Example:
        >>> send_input_request(7, "data")
        {'process': {'pid': 7}, 'input': {'stdin': 'ZGF0YQ=='}}
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return {"process": selector(process), "input": {"pty" if pty else "stdin": connect.b64encode(raw)}}


def signal_request(process: int | str, signal: str = "SIGKILL") -> dict[str, Any]:
    """``SendSignalRequest``; ``signal`` is ``SIGKILL`` or ``SIGTERM``.

    Example:
        >>> signal_request(7)
        {'process': {'pid': 7}, 'signal': 'SIGNAL_SIGKILL'}
    """
    if signal not in ("SIGKILL", "SIGTERM"):
        raise exceptions.InvalidArgumentError(f"unsupported signal {signal!r}: use SIGKILL or SIGTERM")
    return {"process": selector(process), "signal": f"SIGNAL_{signal}"}


def close_stdin_request(process: int | str) -> dict[str, Any]:
    """``CloseStdinRequest``.

    Example:
        >>> close_stdin_request("web")
        {'process': {'tag': 'web'}}
    """
    return {"process": selector(process)}


def update_request(process: int | str, size: models.PtySize) -> dict[str, Any]:
    """``UpdateRequest`` resizing a terminal.

    Example:
        >>> update_request(7, models.PtySize(100, 30))
        {'process': {'pid': 7}, 'pty': {'size': {'cols': 100, 'rows': 30}}}
    """
    return {"process": selector(process), "pty": _size(size)}


def parse_process_list(message: Mapping[str, Any]) -> list[models.ProcessInfo]:
    """``ListResponse`` → :class:`ProcessInfo` list.

    Example:
        >>> parse_process_list({"processes": [{"pid": 3, "config": {"cmd": "/bin/bash"}, "tag": "t"}]})
        [ProcessInfo(pid=3, cmd='/bin/bash', args=[], envs={}, cwd=None, tag='t')]
    """
    out = []
    for item in message.get("processes") or []:
        config = item.get("config") or {}
        out.append(
            models.ProcessInfo(
                pid=int(item.get("pid") or 0),
                cmd=str(config.get("cmd") or ""),
                args=[str(a) for a in config.get("args") or []],
                envs=dict(config.get("envs") or {}),
                cwd=config.get("cwd"),
                tag=item.get("tag"),
            )
        )
    return out


# ------------------------------------------------------------------------------------ events


@dataclasses.dataclass(frozen=True)
class StartEvent:
    pid: int


@dataclasses.dataclass(frozen=True)
class DataEvent:
    stdout: bytes | None = None
    stderr: bytes | None = None
    pty: bytes | None = None


@dataclasses.dataclass(frozen=True)
class EndEvent:
    exit_code: int
    exited: bool
    status: str
    error: str | None


@dataclasses.dataclass(frozen=True)
class KeepaliveEvent:
    pass


Event = StartEvent | DataEvent | EndEvent | KeepaliveEvent


def parse_event(message: Mapping[str, Any]) -> Event | None:
    """One ``StartResponse``/``ConnectResponse`` message; None for an event this SDK does not know.

    Example:
        >>> parse_event({"event": {"end": {"exitCode": 2, "exited": True, "status": "exit status 2"}}})
        EndEvent(exit_code=2, exited=True, status='exit status 2', error=None)
        >>> parse_event({"event": {"end": {"exited": True}}}).exit_code  # proto3 omits the zero
        0
    """
    event = message.get("event")
    if not isinstance(event, dict):
        raise exceptions.ProtocolError(f"process stream message without an event: {dict(message)!r}")
    try:
        if "start" in event:
            return StartEvent(pid=int(event["start"].get("pid") or 0))
        if "data" in event:
            data = event["data"]
            return DataEvent(
                stdout=connect.b64decode(data["stdout"]) if "stdout" in data else None,
                stderr=connect.b64decode(data["stderr"]) if "stderr" in data else None,
                pty=connect.b64decode(data["pty"]) if "pty" in data else None,
            )
        if "end" in event:
            end = event["end"]
            return EndEvent(
                exit_code=int(end.get("exitCode") or 0),
                exited=bool(end.get("exited", False)),
                status=str(end.get("status") or ""),
                error=end.get("error"),
            )
        if "keepalive" in event:
            return KeepaliveEvent()
    except (AttributeError, TypeError, ValueError) as exc:
        raise exceptions.ProtocolError(f"malformed process event {event!r}: {exc}") from None
    return None


class OutputCollector:
    """Everything a process stream delivered, decoded incrementally.

    Attributes:
        pid: From the ``start`` event (0 before it).
        end: The ``end`` event, once it came.

    Example:
        >>> c = OutputCollector()
        >>> c.add(DataEvent(stdout=b"\\xc3")), c.add(DataEvent(stdout=b"\\xa9"))
        ('', 'é')
        >>> c.stdout
        'é'
    """

    def __init__(self) -> None:
        self.pid = 0
        self.end: EndEvent | None = None
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }

    def add(self, event: DataEvent) -> str:
        """Record stdout or stderr data; returns the newly decoded text."""
        if event.stdout is not None:
            text = self._decoders["stdout"].decode(event.stdout)
            self._stdout.append(text)
            return text
        if event.stderr is not None:
            text = self._decoders["stderr"].decode(event.stderr)
            self._stderr.append(text)
            return text
        return ""

    def finish(self) -> tuple[str, str]:
        """Flush the decoders (a truncated character becomes U+FFFD); returns the last stdout, stderr bits."""
        tail_out = self._decoders["stdout"].decode(b"", final=True)
        tail_err = self._decoders["stderr"].decode(b"", final=True)
        self._stdout.append(tail_out)
        self._stderr.append(tail_err)
        return tail_out, tail_err

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def result(self) -> models.CommandResult:
        """The :class:`CommandResult` once the ``end`` event came.

        Raises:
            ProtocolError: if the stream ended without one.
        """
        if self.end is None:
            raise exceptions.ProtocolError("the command's stream ended without an end event")
        return models.CommandResult(self.stdout, self.stderr, self.end.exit_code, self.end.error)
