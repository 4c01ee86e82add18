"""Each fuzzer of fuzz/ runs for a bounded time in CI and must find nothing.

Every target first replays its seeds in fuzz/corpus/, which keep the inputs of earlier
findings (a Connect message nested too deep, file names that are not UTF-8, an empty STDIN
frame to sandlot-init), then mutates them for FUZZ_SECONDS with a fixed seed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import __main__ as fuzz_main

ROOT = Path(__file__).resolve().parents[2]
FUZZ_SECONDS = 25

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", [target.name for target in fuzz_main.TARGETS])
def test_fuzzer_finds_nothing(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fuzz", "--time", str(FUZZ_SECONDS), name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS * 4 + 180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert f"fuzz {name}: " in result.stdout and "nothing found" in result.stdout
