"""The sandbox plane end to end: a real `sandlot serve` (tests/api/conftest.py) driven by the
unmodified e2b SDK with E2B_API_URL and E2B_SANDBOX_URL pointed at it."""

from __future__ import annotations

import pytest
from e2b import CommandExitException, Sandbox

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("e2b_env")]


def test_commands_files_and_pty_through_the_server(cleanup: list[str]) -> None:
    from e2b.sandbox.commands.command_handle import PtySize

    sbx = Sandbox.create(timeout=60, envs={"FROM_CREATE": "yes"})
    cleanup.append(sbx.sandbox_id)
    result = sbx.commands.run("echo $FROM_CREATE; id -un; printf 'x\\ny'")
    assert result.stdout == "yes\nuser\nx\ny"
    with pytest.raises(CommandExitException):
        sbx.commands.run("exit 2")
    sbx.files.write("dir/a.txt", "hello")
    assert sbx.files.read("/home/user/dir/a.txt") == "hello"
    assert [e.name for e in sbx.files.list("dir")] == ["a.txt"]
    out = bytearray()
    handle = sbx.pty.create(PtySize(rows=24, cols=80))
    sbx.pty.send_stdin(handle.pid, b"echo pty-$((1+1)); exit 0\n")
    handle.wait(on_pty=out.extend)
    assert b"pty-2" in out
    assert sbx.is_running()
    sbx.kill()
    assert not sbx.is_running()


def test_run_true_round_trip_through_the_server(cleanup: list[str]) -> None:
    import statistics
    import time

    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    sbx.commands.run("true")
    times = []
    for _ in range(100):
        started = time.perf_counter()
        sbx.commands.run("true")
        times.append(time.perf_counter() - started)
    times.sort()
    print(
        f"commands.run('true') through sandlot serve: p50 {statistics.median(times) * 1e3:.2f} ms, p99 {times[98] * 1e3:.2f} ms"
    )
    assert statistics.median(times) < 0.1
