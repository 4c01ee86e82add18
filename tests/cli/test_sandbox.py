"""``sandlot sandbox`` end to end: the real command in a subprocess, against the SDK tests' server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sdk.servers import SdkServer

pytestmark = pytest.mark.slow

SANDLOT = str(Path(sys.executable).parent / "sandlot")


def run(
    server: SdkServer, *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.key, "COLUMNS": "200", **(env or {})
    }
    return subprocess.run(
        [SANDLOT, "sandbox", *args], capture_output=True, text=True, env=environ, input=input, timeout=120
    )


@pytest.fixture
def sandbox_id(sdk_server: SdkServer) -> Iterator[str]:
    result = run(sdk_server, "create", "--timeout", "300", "--metadata", "suite=cli", "--env", "GREETING=hello")
    assert result.returncode == 0, result.stderr
    sid = result.stdout.strip()
    yield sid
    run(sdk_server, "kill", sid)


def test_create_prints_only_the_id_and_info_shows_it(sdk_server: SdkServer, sandbox_id: str) -> None:
    assert sandbox_id and " " not in sandbox_id
    info = run(sdk_server, "info", sandbox_id)
    assert info.returncode == 0, info.stderr
    assert sandbox_id in info.stdout and "running" in info.stdout and "suite" in info.stdout


def test_exec_streams_output_and_exits_with_the_commands_code(sdk_server: SdkServer, sandbox_id: str) -> None:
    ok = run(sdk_server, "exec", sandbox_id, "--", "echo $GREETING; echo err >&2")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "hello\n", "err\n")
    args = run(sdk_server, "exec", sandbox_id, "--", "printf", "%s|", "a b", "$HOME")
    assert args.stdout == "a b|$HOME|"
    failed = run(sdk_server, "exec", sandbox_id, "--", "echo partial; exit 42")
    assert (failed.returncode, failed.stdout) == (42, "partial\n")
    root = run(sdk_server, "exec", "--user", "root", "--cwd", "/tmp", sandbox_id, "--", "whoami; pwd")
    assert root.stdout == "root\n/tmp\n"


def test_exec_background_logs_and_ps(sdk_server: SdkServer, sandbox_id: str) -> None:
    started = run(
        sdk_server, "exec", "-d", "--tag", "job", sandbox_id, "--", "sleep 4; echo from-job; exit 3"
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip().isdigit()
    ps = run(sdk_server, "ps", sandbox_id)
    assert "job" in ps.stdout
    logs = run(sdk_server, "logs", sandbox_id, "job")
    assert (logs.returncode, logs.stdout) == (3, "from-job\n")


def test_cp_both_ways(sdk_server: SdkServer, sandbox_id: str, tmp_path: Path) -> None:
    local = tmp_path / "data.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    up = run(sdk_server, "cp", str(local), f"{sandbox_id}:/tmp/in/")
    assert up.returncode == 0, up.stderr
    size = run(sdk_server, "exec", sandbox_id, "--", "stat -c %s /tmp/in/data.bin")
    assert size.stdout.strip() == str(local.stat().st_size)
    back = tmp_path / "back"
    back.mkdir()
    down = run(sdk_server, "cp", f"{sandbox_id}:/tmp/in/data.bin", str(back))
    assert down.returncode == 0, down.stderr
    assert (back / "data.bin").read_bytes() == local.read_bytes()
    missing = run(sdk_server, "cp", f"{sandbox_id}:/tmp/nope", str(back))
    assert missing.returncode == 1 and "error" in missing.stderr
    usage = run(sdk_server, "cp", str(local), str(back))
    assert usage.returncode == 2


def test_list_and_kill(sdk_server: SdkServer) -> None:
    suite = uuid.uuid4().hex[:8]
    sid = run(sdk_server, "create", "--metadata", f"suite={suite}").stdout.strip()
    listed = run(sdk_server, "list", "--metadata", f"suite={suite}")
    assert listed.returncode == 0 and sid in listed.stdout
    assert run(sdk_server, "kill", sid).returncode == 0
    again = run(sdk_server, "kill", sid)
    assert again.returncode == 1 and "no sandbox" in again.stderr
    assert sid not in run(sdk_server, "list", "--metadata", f"suite={suite}").stdout


def test_errors_are_one_red_line_with_status_1_or_2(sdk_server: SdkServer) -> None:
    bad_key = run(sdk_server, "list", env={"SANDLOT_API_KEY": "e2b_0000"})
    assert bad_key.returncode == 1
    assert bad_key.stderr.count("\n") == 1 and "error" in bad_key.stderr
    no_server = run(sdk_server, "list", env={"SANDLOT_API_URL": "http://127.0.0.1:1"})
    assert no_server.returncode == 1 and "cannot reach" in no_server.stderr
    unknown = run(sdk_server, "info", "doesnotexist")
    assert unknown.returncode == 1
    bad_pair = run(sdk_server, "create", "--metadata", "novalue")
    assert bad_pair.returncode == 2
    assert run(sdk_server, "exec").returncode == 2


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_shell_in_tmux(sdk_server: SdkServer, sandbox_id: str) -> None:
    session = f"sandlot-test-{os.getpid()}"
    env = f"SANDLOT_API_URL={sdk_server.url} SANDLOT_API_KEY={sdk_server.key}"
    marker = Path(f"/tmp/{session}.exit")
    command = f"env {env} {SANDLOT} sandbox shell {sandbox_id}; echo $? > {marker}; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True)
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

        def wait(text: str) -> None:
            deadline = time.monotonic() + 20
            while text not in screen():
                assert time.monotonic() < deadline, f"{text!r} never appeared:\n{screen()}"
                time.sleep(0.1)

        wait("user@")
        subprocess.run(["tmux", "send-keys", "-t", session, "echo size=$(stty size)", "Enter"], check=True)
        wait("size=30 100")
        subprocess.run(["tmux", "resize-window", "-t", session, "-x", "120", "-y", "40"], check=True)
        time.sleep(0.5)
        subprocess.run(["tmux", "send-keys", "-t", session, "echo now=$(stty size)", "Enter"], check=True)
        wait("now=40 120")
        subprocess.run(["tmux", "send-keys", "-t", session, "exit 5", "Enter"], check=True)
        deadline = time.monotonic() + 20
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline, screen()
            time.sleep(0.1)
        assert marker.read_text().strip() == "5"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        marker.unlink(missing_ok=True)
