"""schemathesis against the served OpenAPI spec of the control plane: whatever it sends, the
server never answers 5xx. Bounded (few examples per operation) so that it takes well under a
minute; every sandbox it manages to create is killed afterwards.

``POST /sandboxes/{id}/pause`` and ``/fork`` are left out: each checkpoints a real sandbox
with CRIU (a fork of count 20 makes twenty), too slow for a fuzzer's budget; test_pause.py
covers them.

It has a server of its own whose memory may be committed many times over: the fuzzer makes
dozens of sandboxes, some asking gigabytes, and the 503 of a full host (right, and tested in
tests/security/test_admission_limits.py) is not what it looks for."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot.runtime.drivers.runc import RuncDriver
from tests import slot
from tests._support.server import Server, serving


@pytest.fixture(scope="module")
def server(data_root: Path, driver: RuncDriver) -> Iterator[Server]:
    """The module's server; it asks for `driver` so that the driver's census runs after it."""
    settings = {"SANDLOT_MEMORY_OVERCOMMIT": "50", "SANDLOT_POOL_MAX": "0"}
    with serving(data_root / "schemathesis", f"t{os.getpid()}f", slot.subnet(210), settings) as srv:
        yield srv


@pytest.fixture(scope="module", autouse=True)
def _server_before_census(server: Server) -> None:
    """The conftest's, for this module's own `server`: a session-scoped one cannot ask for it."""


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
