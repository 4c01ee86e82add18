"""``sandlot sandbox pause|resume|fork|restart|snapshot`` and ``sandlot snapshot``, end to end."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests import conftest
from tests.cli.test_sandbox import SANDLOT, run
from tests.sdk.servers import SdkServer

pytestmark = [pytest.mark.slow, conftest.needs_criu]


@pytest.fixture
def sandbox_id(sdk_server: SdkServer) -> Iterator[str]:
    result = run(sdk_server, "create", "--timeout", "300", "--metadata", "suite=cli-life")
    assert result.returncode == 0, result.stderr
    sid = result.stdout.strip()
    yield sid
    run(sdk_server, "kill", sid)


def test_pause_and_resume_keep_a_background_process_and_are_idempotent(sdk_server: SdkServer, sandbox_id: str) -> None:
    started = run(sdk_server, "exec", "-d", sandbox_id, "--", "python3 -c 'import time\nwhile True: time.sleep(1)'")
    assert started.returncode == 0, started.stderr
    pid = started.stdout.strip()
    paused = run(sdk_server, "pause", sandbox_id)
    assert (paused.returncode, paused.stdout) == (0, "")
    assert "paused" in paused.stderr
    assert "paused" in run(sdk_server, "info", sandbox_id).stdout
    again = run(sdk_server, "pause", sandbox_id)
    assert again.returncode == 0 and "already paused" in again.stderr
    resumed = run(sdk_server, "resume", sandbox_id, "--timeout", "120")
    assert resumed.returncode == 0 and "resumed" in resumed.stderr
    assert pid in run(sdk_server, "ps", sandbox_id).stdout  # the same process goes on
    running = run(sdk_server, "resume", sandbox_id)
    assert running.returncode == 0 and "already running" in running.stderr
    assert run(sdk_server, "pause", "doesnotexist").returncode == 1


def test_fork_prints_one_id_per_copy(sdk_server: SdkServer, sandbox_id: str) -> None:
    assert run(sdk_server, "exec", sandbox_id, "--", "echo forked-state > /tmp/state").returncode == 0
    forked = run(sdk_server, "fork", sandbox_id, "--count", "2", "--timeout", "120")
    assert forked.returncode == 0, forked.stderr
    children = forked.stdout.split()
    try:
        assert len(children) == 2 and sandbox_id not in children and len(set(children)) == 2
        for child in children:
            assert run(sdk_server, "exec", child, "--", "cat /tmp/state").stdout == "forked-state\n"
    finally:
        for child in children:
            run(sdk_server, "kill", child)
    assert run(sdk_server, "pause", sandbox_id).returncode == 0
    refused = run(sdk_server, "fork", sandbox_id)
    assert refused.returncode == 1 and "error" in refused.stderr
    assert run(sdk_server, "fork", sandbox_id, "--count", "0").returncode == 2


def test_snapshot_create_from_it_list_and_delete(sdk_server: SdkServer, sandbox_id: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    assert run(sdk_server, "exec", sandbox_id, "--", "echo in-the-snapshot > /home/user/s.txt").returncode == 0
    taken = run(sdk_server, "snapshot", sandbox_id, "--name", name)
    assert (taken.returncode, taken.stdout) == (0, f"{name}:v1\n"), taken.stderr
    files_only = run(sdk_server, "snapshot", sandbox_id, "--name", name, "--no-memory")
    assert files_only.stdout == f"{name}:v2\n"
    try:
        table = _snapshot(sdk_server, "list", "--sandbox", sandbox_id)
        assert table.returncode == 0 and f"{name}:v1" in table.stdout and f"{name}:v2" in table.stdout
        assert "files only" in table.stdout
        made = run(sdk_server, "create", "--template", f"{name}:v1", "--timeout", "120")
        assert made.returncode == 0, made.stderr
        child = made.stdout.strip()
        try:
            assert run(sdk_server, "exec", child, "--", "cat /home/user/s.txt").stdout == "in-the-snapshot\n"
            info = run(sdk_server, "info", child).stdout
            assert "boot" in info and "fork" in info
        finally:
            run(sdk_server, "kill", child)
        assert _snapshot(sdk_server, "delete", f"{name}:v1").returncode == 0
        gone = _snapshot(sdk_server, "delete", f"{name}:v1")
        assert gone.returncode == 1 and "no snapshot" in gone.stderr
        assert _snapshot(sdk_server, "delete", name).returncode == 0  # every version left
        assert name not in _snapshot(sdk_server, "list", "--name", name).stdout
    finally:
        _snapshot(sdk_server, "delete", name)


def test_restart_ends_the_processes_and_keeps_the_files(sdk_server: SdkServer, sandbox_id: str) -> None:
    pid = run(sdk_server, "exec", "-d", "--tag", "sleeper", sandbox_id, "--", "sleep 600").stdout.strip()
    assert pid.isdigit()
    assert run(sdk_server, "exec", sandbox_id, "--", "echo kept > /home/user/k.txt").returncode == 0
    restarted = run(sdk_server, "restart", sandbox_id, "--timeout", "120")
    assert restarted.returncode == 0 and "restarted" in restarted.stderr
    assert "sleeper" not in run(sdk_server, "ps", sandbox_id).stdout
    assert run(sdk_server, "exec", sandbox_id, "--", "cat /home/user/k.txt").stdout == "kept\n"
    assert "clean" in run(sdk_server, "info", sandbox_id).stdout


def test_create_takes_the_lifecycle_options(sdk_server: SdkServer) -> None:
    made = run(sdk_server, "create", "--auto-pause", "--auto-resume", "--idle-timeout", "600")
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip()
    try:
        info = run(sdk_server, "info", sid).stdout
        assert "pause" in info and "auto-resume" in info and "yes" in info and "600 s" in info
    finally:
        run(sdk_server, "kill", sid)


def _snapshot(server: SdkServer, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.key, "COLUMNS": "200"}
    return subprocess.run([SANDLOT, "snapshot", *args], capture_output=True, text=True, env=environ, timeout=120)
