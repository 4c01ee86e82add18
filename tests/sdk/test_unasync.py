"""The sync SDK is generated from the async one and must not be stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import unasync  # noqa: E402


def test_token_rewriting() -> None:
    line = "    async with await AsyncSandbox.create() as sbx: await x.aclose(); y = httpx.AsyncClient()\n"
    assert unasync.unasync_line(line) == "    with Sandbox.create() as sbx: x.close(); y = httpx.Client()\n"
    assert unasync.unasync_line("async for c in r.aiter_bytes():") == "for c in r.iter_bytes():"
    assert unasync.unasync_line("from sandlot.sdk._async.files import AsyncFiles") == (
        "from sandlot.sdk._sync.files import Files"
    )
    assert unasync.unasync_line("def __aenter__(self): raise StopAsyncIteration") == (
        "def __enter__(self): raise StopIteration"
    )
    assert unasync.unasync_line("self._aclose_all()") == "self._aclose_all()"


def test_generated_sync_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_sync_package_has_the_public_names() -> None:
    import sandlot

    for name in ("Sandbox", "AsyncSandbox", "SandlotError", "CommandExitError", "__version__"):
        assert name in sandlot.__all__
        assert hasattr(sandlot, name)
    assert sandlot.Sandbox.__module__ == "sandlot.sdk._sync.sandbox"
