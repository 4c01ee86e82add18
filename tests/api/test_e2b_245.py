"""The same lifecycle scenarios through e2b 2.45.1, which uses the older routes
(``POST /sandboxes``, ``POST /sandboxes/{id}/connect``) and checks the key's shape.

2.45.1 cannot share .venv with the latest e2b, so it lives in its own venv, made here on first
use (``E2B_245_VENV``, default /var/tmp/e2b-2.45) and run in a subprocess.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.server import Server

VENV = Path(os.environ.get("E2B_245_VENV", "/var/tmp/e2b-2.45"))


def _ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        check = [
            str(python),
            "-c",
            "import importlib.metadata as m; assert m.version('e2b') == '2.45.1'",
        ]
        if (
            python.exists()
            and subprocess.run(check, capture_output=True, check=False).returncode == 0
        ):
            return python
        subprocess.run([os.path.join(sys.base_prefix, "bin", "python3"), "-m", "venv", "--clear", str(VENV)],
                       check=True, capture_output=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "e2b==2.45.1",
            ],
            check=True,
            capture_output=True,
        )
    return python


@pytest.mark.slow
def test_lifecycle_through_e2b_2_45(server: Server, other_key: str) -> None:
    python = _ensure_venv()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("E2B_")},
        "E2B_API_URL": server.url,
        "E2B_SANDBOX_URL": server.url,
        "E2B_API_KEY": server.key,
    }
    result = subprocess.run(
        [str(python), str(Path(__file__).with_name("e2b_245_scenario.py")), other_key],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0 and "ALL OK" in result.stdout, (
        result.stdout + result.stderr
    )
