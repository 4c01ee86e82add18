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
    assert unasync.unasync_code(line) == "    with Sandbox.create() as sbx: x.close(); y = httpx.Client()\n"
    assert unasync.unasync_code("async for c in r.aiter_bytes():") == "for c in r.iter_bytes():"
    assert unasync.unasync_code("from sandlot.sdk._async.files import AsyncFiles") == (
        "from sandlot.sdk._sync.files import Files"
    )
    assert unasync.unasync_code("def __aenter__(self): raise StopAsyncIteration") == (
        "def __enter__(self): raise StopIteration"
    )
    assert unasync.unasync_code("self._aclose_all()") == "self._aclose_all()"


def test_prose_keeps_its_sentences_and_rewrites_its_code() -> None:
    source = (
        '"""AsyncThing is written by hand; ``AsyncThing`` is its name here.\n'
        "\n"
        "Example:\n"
        "    >>> await AsyncThing().aclose()\n"
        '"""\n'
        "# the async flavour calls aclose(), see :meth:`AsyncThing.aclose`\n"
        "class AsyncThing:\n"
        '    """Made by AsyncThing.create."""\n'
        "\n"
        "    async def aclose(self) -> str:\n"
        '        return f"<AsyncThing {self!r}>"  # repr of AsyncThing\n'
    )
    assert unasync.unasync_source(source) == (
        '"""AsyncThing is written by hand; ``Thing`` is its name here.\n'
        "\n"
        "Example:\n"
        "    >>> Thing().close()\n"
        '"""\n'
        "# the async flavour calls aclose(), see :meth:`Thing.close`\n"
        "class Thing:\n"
        '    """Made by AsyncThing.create."""\n'
        "\n"
        "    def close(self) -> str:\n"
        '        return f"<Thing {self!r}>"  # repr of AsyncThing\n'
    )


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
