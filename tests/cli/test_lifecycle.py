"""``sandlot sandbox pause|resume|fork|restart|snapshot`` and ``sandlot snapshot``, end to end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_sandbox import run
from tests.sdk.conftest import SdkServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(os.environ.get("SANDLOT_CACHE_DIR", "/var/cache/sandlot")) / "criu" / "current" / "criu").exists(),
        reason="CRIU is not built (scripts/setup builds it)",
    ),
]


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
