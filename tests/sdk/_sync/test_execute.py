# Generated from tests/sdk/_async/test_execute.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""``execute`` / ``Executor`` against a real server's ``POST /execute`` (written once, for both flavours)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from sandlot import Executor, StageStatus, execute
from sandlot.cli.run import EXTENSIONS
from sandlot.sdk import _synchronization, exceptions
from tests.sdk.servers import SdkServer

pytestmark = pytest.mark.slow


def test_hello_world_with_stdin_args_and_env(sdk_server: SdkServer) -> None:
    code = "import os, sys\nprint(input()[::-1], sys.argv[1:], os.environ['GREETING'])"
    result = execute(
        code, language="python", stdin="olleh\n", args=["a b", "c"], env={"GREETING": "hi"}, config=sdk_server.config
    )
    assert result.language == "python" and result.version.startswith("3.")
    assert result.compile is None and result.run is not None
    assert result.stdout == "hello ['a b', 'c'] hi\n"
    assert (result.status, result.exit_code, result.ok) == (StageStatus.OK, 0, True)
    assert result.run.wall_ms > 0 and result.run.memory_peak_kb > 0


def test_an_executor_runs_many_and_each_run_is_fresh(sdk_server: SdkServer) -> None:
    with Executor(config=sdk_server.config) as executor:
        first = executor.execute(
            "open('/tmp/left-behind', 'w').write('x'); print('wrote')", language="python"
        )
        assert first.stdout == "wrote\n"
        second = executor.execute(
            "import os; print(os.path.exists('/tmp/left-behind'))", language="python"
        )
        assert second.stdout == "False\n"


def test_files_the_first_is_the_entry_point(sdk_server: SdkServer) -> None:
    result = execute(
        files={"main.py": "import util\nutil.hello()", "util.py": "def hello():\n    print('from util')"},
        language="py",
        config=sdk_server.config,
    )
    assert result.stdout == "from util\n"


def test_exit_codes_timeouts_and_compile_errors(sdk_server: SdkServer) -> None:
    config = sdk_server.config
    failed = execute("import sys; print('partial'); sys.exit(3)", language="python", config=config)
    assert (failed.status, failed.exit_code, failed.stdout, failed.ok) == (
        StageStatus.RUNTIME_ERROR, 3, "partial\n", False
    )
    slow = execute("while True: pass", language="python", timeout=1, config=config)
    assert slow.status == StageStatus.TIMEOUT and slow.run is not None and slow.run.wall_ms >= 900
    broken = execute("fn main() { let x: i32 = \"no\"; }", language="rust", config=config)
    assert broken.status == StageStatus.COMPILE_ERROR and broken.run is None
    assert broken.compile is not None and "mismatched types" in broken.stderr
    ok = execute('fn main() { println!("rust ok"); }', language="rust", config=config)
    assert ok.compile is not None and ok.compile.status == StageStatus.OK
    assert ok.stdout == "rust ok\n"


def test_languages_cover_the_cli_extensions(sdk_server: SdkServer) -> None:
    with Executor(config=sdk_server.config) as executor:
        languages = executor.languages()
    names = {lang.language for lang in languages} | {a for lang in languages for a in lang.aliases}
    assert set(EXTENSIONS.values()) <= names
    assert all(lang.version for lang in languages)


def test_bad_requests_name_what_to_fix(sdk_server: SdkServer) -> None:
    with pytest.raises(exceptions.InvalidArgumentError, match="cobol"):
        execute("x", language="cobol", config=sdk_server.config)
    with pytest.raises(exceptions.InvalidArgumentError):
        execute(language="python", config=sdk_server.config)  # neither code nor files: refused before sending


def test_a_full_queue_is_ridden_out_by_the_retries_or_raised(small_server: SdkServer) -> None:
    # One runner, one place in the queue: a hog runs, a second run waits, and a third is
    # answered 429 with Retry-After: 1 until the waiting one gets the runner.
    done: list[str] = []

    def submit(code: str) -> None:
        result = execute(code, language="bash", timeout=10, config=small_server.config)
        done.append(result.stdout)

    hog = _synchronization.BackgroundTask(lambda: submit("sleep 2; echo hog"))
    _synchronization.sleep(0.4)
    queued = _synchronization.BackgroundTask(lambda: submit("echo queued"))
    _synchronization.sleep(0.4)
    impatient = dataclasses.replace(small_server.config, retries=0)
    with pytest.raises(exceptions.RateLimitedError) as refused:
        execute("echo now", language="bash", config=impatient)
    assert refused.value.status == 429 and refused.value.retry_after == 1.0
    started = time.monotonic()
    patient = dataclasses.replace(small_server.config, retries=5)
    result = execute("echo after-retries", language="bash", config=patient)
    assert result.stdout == "after-retries\n"
    assert time.monotonic() - started >= 0.9, "it was let in at once: the queue was not full"
    hog.wait()
    queued.wait()
    assert sorted(done) == ["hog\n", "queued\n"]


def test_no_runner_free_in_time_is_unavailable_not_retried(small_server: SdkServer) -> None:
    hog = _synchronization.BackgroundTask(
        lambda: execute("sleep 5", language="bash", config=small_server.config)  # type: ignore[arg-type, return-value]
    )
    _synchronization.sleep(0.5)
    started = time.monotonic()
    with pytest.raises(exceptions.UnavailableError, match="became free"):
        execute("echo never", language="bash", config=small_server.config)
    assert time.monotonic() - started < 4.5, "a 503 was retried"
    hog.wait()
