"""``POST /execute`` and ``GET /execute/languages``, built and parsed without I/O.

A one-shot run sends its program as ``code`` (one source text) or ``files`` (the first is the
entry point; bytes go base64-encoded) and gets back the language and version that ran and one
:class:`~sandlot.sdk._core.models.ExecuteStage` per stage. Keys the caller left unset are
omitted, so the server's defaults (a 10 s wall-clock limit, 64 KiB of output, no network)
apply. The body is snake_case, unlike the E2B routes: ``/execute`` is sandlot's own.

The HTTP request may take as long as the run itself, so the request carries a timeout of its
own: the run's limit (the server's 10 s default when none is given) twice over, for a compile
stage and the queue, plus a margin for the server to answer after it stopped the program.

Example:
    >>> request = execute_request(language="python", code="print(1)", timeout=5)
    >>> request.path, request.json, request.timeout
    ('/execute', {'language': 'python', 'code': 'print(1)', 'timeout': 5.0}, 40.0)
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack

from sandlot.sdk import exceptions
from sandlot.sdk._core import api, models

__all__ = [
    "DEFAULT_RUN_TIMEOUT",
    "RunOptions",
    "execute_request",
    "languages_request",
    "parse_languages",
    "parse_result",
]

DEFAULT_RUN_TIMEOUT = 10.0  # the server's default wall-clock limit (contract: timeout default 10)
_ANSWER_MARGIN = 30.0  # seconds for the server to stop the program, collect output and answer


class RunOptions(TypedDict, total=False):
    """How to run a program: the keyword arguments of ``execute`` after ``code`` and ``language``.

    ``AsyncExecutor.execute`` documents each one; a key left out is left out of the request too,
    so the server's default applies.
    """

    version: str | None
    files: Mapping[str, str | bytes] | None
    stdin: str | None
    args: Sequence[str] | None
    env: Mapping[str, str] | None
    timeout: float | None
    cpu_time: float | None
    memory_mb: int | None
    output_limit: int | None
    network: bool | None


def execute_request(*, language: str, code: str | None = None, **options: Unpack[RunOptions]) -> api.Request:
    """The ``POST /execute`` request for one program.

    Raises:
        InvalidArgumentError: neither or both of ``code`` and ``files``, an empty language, a
            non-positive limit, or ``args`` given as one string.

    Example:
        >>> execute_request(language="python", files={"main.py": "import util", "util.py": b"\\x00"}).json["files"]
        [{'name': 'main.py', 'content': 'import util'}, {'name': 'util.py', 'content': 'AA==', 'encoding': 'base64'}]
    """
    api.check_keywords(options, RunOptions, "execute")
    files, timeout = options.get("files"), options.get("timeout")
    if not language or not isinstance(language, str):
        raise exceptions.InvalidArgumentError("language must name a language, such as 'python'")
    if (code is None) == (files is None):
        raise exceptions.InvalidArgumentError("give exactly one of code and files")
    body: dict[str, Any] = {"language": language}
    if (version := options.get("version")) is not None:
        body["version"] = version
    if code is not None:
        if not isinstance(code, str):
            raise exceptions.InvalidArgumentError("code must be a str; pass bytes as files={name: data}")
        body["code"] = code
    else:
        assert files is not None
        if not files:
            raise exceptions.InvalidArgumentError("files must hold at least the entry point")
        body["files"] = [_file(name, content) for name, content in files.items()]
    if (stdin := options.get("stdin")) is not None:
        body["stdin"] = stdin
    if (args := options.get("args")) is not None:
        if isinstance(args, str):
            raise exceptions.InvalidArgumentError("args is a list of arguments, not one string")
        body["args"] = [str(a) for a in args]
    if (env := options.get("env")) is not None:
        body["env"] = {str(k): str(v) for k, v in env.items()}
    if timeout is not None:
        body["timeout"] = _positive(timeout, "timeout")
    if (cpu_time := options.get("cpu_time")) is not None:
        body["cpu_time"] = _positive(cpu_time, "cpu_time")
    if (memory_mb := options.get("memory_mb")) is not None:
        body["memory_mb"] = int(_positive(memory_mb, "memory_mb"))
    if (output_limit := options.get("output_limit")) is not None:
        body["output_limit"] = int(_positive(output_limit, "output_limit"))
    if (network := options.get("network")) is not None:
        body["network"] = bool(network)
    wait = 2 * (timeout if timeout is not None else DEFAULT_RUN_TIMEOUT) + _ANSWER_MARGIN
    return api.Request("POST", "/execute", json=body, timeout=wait)


def languages_request() -> api.Request:
    """``GET /execute/languages``.

    Example:
        >>> languages_request().path
        '/execute/languages'
    """
    return api.Request("GET", "/execute/languages")


def parse_result(status: int, headers: Mapping[str, str], body: bytes) -> models.ExecuteResult:
    """The answer to ``POST /execute``; 429 and 503 raise :class:`RateLimitedError` and
    :class:`UnavailableError`, 400 :class:`InvalidArgumentError` with the server's message.

    Example:
        >>> parse_result(429, {"Retry-After": "1"}, b'{"code":429,"message":"queue full"}')
        Traceback (most recent call last):
        sandlot.sdk.exceptions.RateLimitedError: 429: queue full
    """
    api.raise_for_status(status, headers, body, sandbox=False)
    data = api.decode_json_object(body)
    try:
        result = models.ExecuteResult(
            language=str(data["language"]),
            version=str(data.get("version") or ""),
            compile=_stage(data.get("compile")),
            run=_stage(data.get("run")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise exceptions.ProtocolError(f"malformed execute answer: {exc!r}") from None
    if result.compile is None and result.run is None:
        raise exceptions.ProtocolError("execute answer has neither a compile nor a run stage")
    return result


def parse_languages(status: int, headers: Mapping[str, str], body: bytes) -> list[models.Language]:
    """The answer to ``GET /execute/languages``.

    Example:
        >>> parse_languages(200, {}, b'[{"language":"python","version":"3.11.2","aliases":["py"],"compiled":false}]')
        [Language(language='python', version='3.11.2', aliases=['py'], compiled=False)]
    """
    api.raise_for_status(status, headers, body, sandbox=False)
    items = api.decode_json(body)
    if not isinstance(items, list):
        raise exceptions.ProtocolError("language list is not a JSON array")
    try:
        return [
            models.Language(
                language=str(item["language"]),
                version=str(item.get("version") or ""),
                aliases=[str(a) for a in item.get("aliases") or []],
                compiled=bool(item.get("compiled", False)),
            )
            for item in items
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise exceptions.ProtocolError(f"malformed language entry: {exc!r}") from None


def _file(name: str, content: str | bytes) -> dict[str, str]:
    if not name or not isinstance(name, str) or "\x00" in name:
        raise exceptions.InvalidArgumentError(f"invalid file name {name!r}")
    if isinstance(content, bytes):
        return {"name": name, "content": base64.b64encode(content).decode(), "encoding": "base64"}
    if isinstance(content, str):
        return {"name": name, "content": content}
    raise exceptions.InvalidArgumentError(f"file {name!r}: content must be str or bytes")


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise exceptions.InvalidArgumentError(f"{name} must be a positive number, not {value!r}")
    return float(value)


def _stage(data: Any) -> models.ExecuteStage | None:
    if data is None:
        return None
    exit_code = data.get("exit_code")
    return models.ExecuteStage(
        stdout=str(data.get("stdout") or ""),
        stderr=str(data.get("stderr") or ""),
        exit_code=None if exit_code is None else int(exit_code),
        signal=data.get("signal") or None,
        status=_status(data["status"]),
        wall_ms=float(data.get("wall_ms") or 0.0),
        cpu_ms=float(data.get("cpu_ms") or 0.0),
        memory_peak_kb=int(data.get("memory_peak_kb") or 0),
        truncated=bool(data.get("truncated", False)),
    )


def _status(value: Any) -> models.StageStatus | str:
    try:
        return models.StageStatus(value)
    except ValueError:
        return str(value)  # a status newer than this SDK: keep it readable
