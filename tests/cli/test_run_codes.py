"""``sandlot run``'s exit codes and notes, from results as the server answers them (no server)."""

from __future__ import annotations

import json

import pytest

from sandlot.cli import run
from sandlot.sdk._core import execute

RUN = {"stdout": "", "stderr": "", "exit_code": 0, "signal": None, "status": "ok", "wall_ms": 5.0,
       "cpu_ms": 4.0, "memory_peak_kb": 2048, "truncated": False}


def _result(
    run_stage: dict[str, object] | None, compile_stage: dict[str, object] | None = None
) -> execute.models.ExecuteResult:
    body = {"language": "rust", "version": "1.63.0", "compile": compile_stage, "run": run_stage}
    return execute.parse_result(200, {}, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        ({}, 0),
        ({"exit_code": 3, "status": "runtime_error"}, 3),
        ({"exit_code": None, "signal": "SIGSEGV", "status": "runtime_error"}, 139),
        ({"exit_code": None, "signal": "SIGKILL", "status": "timeout"}, 124),
        ({"exit_code": 0, "status": "timeout"}, 124),  # a limit wins over whatever code it had
        ({"exit_code": None, "signal": "SIGKILL", "status": "oom"}, 137),
        ({"exit_code": None, "signal": "SIGKILL", "status": "output_limit", "truncated": True}, 141),
        ({"exit_code": 0, "status": "ok", "truncated": True}, 0),
        ({"exit_code": None, "signal": "SIGXFSZ", "status": "runtime_error"}, 153),
        ({"exit_code": None, "signal": None, "status": "runtime_error"}, 137),
    ],
)
def test_run_exit_codes(stage: dict[str, object], code: int) -> None:
    assert run.exit_status(_result(RUN | stage)) == code


def test_a_compile_error_exits_65_and_says_so() -> None:
    failed = RUN | {"exit_code": 1, "status": "compile_error", "stderr": "error: expected `;`"}
    result = _result(None, failed)
    assert run.exit_status(result) == 65
    assert run._note(result) == "rust 1.63.0 did not compile it"


def test_notes_name_the_limit_and_stay_quiet_for_the_programs_own_ending() -> None:
    assert run._note(_result(RUN)) is None
    assert run._note(_result(RUN | {"exit_code": 2, "status": "runtime_error"})) is None
    assert run._note(_result(RUN | {"status": "timeout", "wall_ms": 2004.0, "exit_code": None})) == (
        "stopped at its time limit after 2.0 s"
    )
    assert "memory limit" in (run._note(_result(RUN | {"status": "oom", "exit_code": None})) or "")
    segfault = RUN | {"exit_code": None, "signal": "SIGSEGV", "status": "runtime_error"}
    assert run._note(_result(segfault)) == "killed by SIGSEGV"
    assert run._note(_result(RUN | {"truncated": True})) == "output cut at the limit"


def test_the_documented_codes_are_distinct() -> None:
    assert len(set(run.EXIT.values())) == len(run.EXIT)
    for code in run.EXIT.values():
        assert str(code) in run.__doc__  # type: ignore[operator]
