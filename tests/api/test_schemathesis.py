"""schemathesis against the served OpenAPI spec of the control plane: whatever it sends, the
server never answers 5xx. Bounded (few examples per operation) so that it takes well under a
minute; every sandbox it manages to create is killed afterwards.

``POST /sandboxes/{id}/pause`` and ``/fork`` are left out: each checkpoints a real sandbox
with CRIU (a fork of count 20 makes twenty), too slow for a fuzzer's budget; test_pause.py
covers them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.server import Server


@pytest.mark.slow
def test_no_server_errors(server: Server, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    try:
        result = subprocess.run(
            [
                str(schemathesis), "run", f"{server.url}/openapi.json",
                "--header", f"X-API-Key: {server.key}",
                "--checks", "not_a_server_error",
                "--max-examples", "10",
                "--exclude-path", "/sandboxes/{sandbox_id}/pause",
                "--exclude-path", "/sandboxes/{sandbox_id}/fork",
                "--phases", "examples,coverage,fuzzing",
                "--max-time", "40",
                # A restart or snapshot boots or dumps a real sandbox: seconds when the host is
                # loaded, more than the default 10 s when other test runs share its 2 cores.
                "--request-timeout", "30",
                "--seed", "1",
                "--generation-deterministic",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
    finally:
        server.kill_all()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
