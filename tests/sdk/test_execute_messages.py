"""``POST /execute`` and ``GET /execute/languages`` as the SDK builds and reads them (no I/O)."""

from __future__ import annotations

import json

import pytest

from sandlot.sdk import exceptions
from sandlot.sdk._core import execute, models

OK_RUN = {
    "stdout": "hi\n",
    "stderr": "",
    "exit_code": 0,
    "signal": None,
    "status": "ok",
    "wall_ms": 12.5,
    "cpu_ms": 9.0,
    "memory_peak_kb": 8123,
    "truncated": False,
}


def _answer(**fields: object) -> bytes:
    return json.dumps({"language": "python", "version": "3.11.2", "compile": None, "run": OK_RUN} | fields).encode()


def test_request_sends_only_what_was_given_in_snake_case() -> None:
    request = execute.execute_request(language="python", code="print(1)")
    assert (request.method, request.path) == ("POST", "/execute")
    assert request.json == {"language": "python", "code": "print(1)"}
    full = execute.execute_request(
        language="rust",
        version="1.63",
        files={"main.rs": "fn main() {}", "data.bin": b"\x00\xff"},
        stdin="in",
        args=["-v", 3],  # type: ignore[list-item]
        env={"A": "1"},
        timeout=2,
        cpu_time=1.5,
        memory_mb=64,
        output_limit=1024,
        network=False,
    )
    assert full.json == {
        "language": "rust",
        "version": "1.63",
        "files": [
            {"name": "main.rs", "content": "fn main() {}"},
            {"name": "data.bin", "content": "AP8=", "encoding": "base64"},
        ],
        "stdin": "in",
        "args": ["-v", "3"],
        "env": {"A": "1"},
        "timeout": 2.0,
        "cpu_time": 1.5,
        "memory_mb": 64,
        "output_limit": 1024,
        "network": False,
    }


def test_the_http_wait_outlasts_the_run() -> None:
    assert execute.execute_request(language="python", code="").timeout == 2 * execute.DEFAULT_RUN_TIMEOUT + 30
    assert execute.execute_request(language="python", code="", timeout=100).timeout == 230


@pytest.mark.parametrize(
    "kwargs",
    [
        {"language": "python"},  # neither code nor files
        {"language": "python", "code": "1", "files": {"a.py": "1"}},  # both
        {"language": "", "code": "1"},
        {"language": "python", "files": {}},
        {"language": "python", "files": {"": "x"}},
        {"language": "python", "code": b"print(1)"},
        {"language": "python", "code": "1", "args": "-v -x"},
        {"language": "python", "code": "1", "timeout": 0},
        {"language": "python", "code": "1", "memory_mb": -1},
        {"language": "python", "code": "1", "output_limit": True},
    ],
)
def test_bad_requests_fail_before_anything_is_sent(kwargs: dict[str, object]) -> None:
    with pytest.raises(exceptions.InvalidArgumentError):
        execute.execute_request(**kwargs)  # type: ignore[arg-type]


def test_an_interpreted_run() -> None:
    result = execute.parse_result(200, {}, _answer())
    assert (result.language, result.version, result.compile) == ("python", "3.11.2", None)
    assert result.run == models.ExecuteStage("hi\n", "", 0, None, models.StageStatus.OK, 12.5, 9.0, 8123, False)
    assert (result.stdout, result.stderr, result.exit_code, result.ok) == ("hi\n", "", 0, True)
    assert result.status == "ok"  # a str enum


def test_a_compile_error_has_no_run_and_reads_as_the_compilers_failure() -> None:
    failed = OK_RUN | {
        "stdout": "", "stderr": "error[E0425]: cannot find value `x`", "exit_code": 1, "status": "compile_error"
    }
    result = execute.parse_result(200, {}, _answer(language="rust", version="1.63.0", compile=failed, run=None))
    assert result.run is None
    assert result.status is models.StageStatus.COMPILE_ERROR
    assert (result.stdout, result.exit_code, result.ok) == ("", 1, False)
    assert "E0425" in result.stderr


def test_signals_limits_and_statuses_from_a_newer_server() -> None:
    killed = OK_RUN | {"stdout": "x" * 10, "exit_code": None, "signal": "SIGKILL", "status": "oom", "truncated": True}
    result = execute.parse_result(200, {}, _answer(run=killed))
    assert result.run is not None
    assert (result.exit_code, result.run.signal, result.status, result.run.truncated) == (None, "SIGKILL", "oom", True)
    future = execute.parse_result(200, {}, _answer(run=OK_RUN | {"status": "quarantined"}))
    assert future.status == "quarantined" and not future.ok


def test_error_answers() -> None:
    with pytest.raises(exceptions.InvalidArgumentError, match="unknown language cobol"):
        execute.parse_result(400, {}, b'{"code":400,"message":"unknown language cobol"}')
    with pytest.raises(exceptions.RateLimitedError) as caught:
        execute.parse_result(429, {"Retry-After": "2"}, b'{"code":429,"message":"queue full"}')
    assert caught.value.retry_after == 2.0
    with pytest.raises(exceptions.UnavailableError):
        execute.parse_result(503, {}, b'{"code":503,"message":"no runner became free in time"}')
    with pytest.raises(exceptions.AuthenticationError):
        execute.parse_result(401, {}, b'{"code":401,"message":"invalid API key"}')
    with pytest.raises(exceptions.ProtocolError):
        execute.parse_result(200, {}, _answer(run=None))
    with pytest.raises(exceptions.ProtocolError):
        execute.parse_result(200, {}, _answer(run={"stdout": "no status"}))


def test_languages() -> None:
    body = (
        b'[{"language":"rust","version":"1.63.0","aliases":["rs"],"compiled":true},'
        b'{"language":"bash","version":"5.2"}]'
    )
    assert execute.parse_languages(200, {}, body) == [
        models.Language("rust", "1.63.0", ["rs"], True),
        models.Language("bash", "5.2", [], False),
    ]
    assert execute.languages_request().path == "/execute/languages"
    with pytest.raises(exceptions.ProtocolError):
        execute.parse_languages(200, {}, b'{"python": 1}')


def test_a_misspelt_option_is_refused_as_python_refuses_it() -> None:
    with pytest.raises(TypeError, match="execute\\(\\) got an unexpected keyword argument 'timout'"):
        execute.execute_request(language="python", code="1", timout=5)  # type: ignore[call-arg]
