"""Real sandlot servers for the SDK and CLI tests (tests/_support/server.py), and sandboxes on them.

A plugin of the root conftest (``pytest_plugins``), not a conftest of its own: tests/sdk and
tests/cli share one ``sdk_server`` per session. Importing these fixtures into a second
conftest made a second server with the same runc instance and subnet, whose veths and
nftables table collided with the first's.

``sdk_server`` is runc instance ``t<pid>k`` on the lower half of ``10.<60 + slot>.0.0/16``;
``small_server`` (instance ``t<pid>m``, the upper half) has an ``/execute`` queue small enough
to fill from a test. Neither asks for the session's runc driver: the SDK tests need none, and
without it they skip the per-test leak check of tests/conftest.py; each server's own census
at its end still must find nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import slot
from tests._support.server import Server, serving

SdkServer = Server
"""The name the SDK and CLI tests know the server by."""


@pytest.fixture(scope="session")
def sdk_server(data_root: Path) -> Iterator[Server]:
    with serving(data_root / "sdk", f"t{os.getpid()}k", slot.subnet(60), verbose=False) as server:
        yield server


@pytest.fixture(scope="session")
def small_server(data_root: Path) -> Iterator[Server]:
    """A server whose ``/execute`` has one runner sandbox and room for one waiting run: a third
    concurrent run is answered 429 (``Retry-After: 1``), one that waits 3 s for a runner 503."""
    settings = {
        "SANDLOT_POOL_MAX": "0",
        "SANDLOT_EXECUTE_POOL_MIN": "1",
        "SANDLOT_EXECUTE_POOL_MAX": "1",
        "SANDLOT_EXECUTE_QUEUE": "1",
        "SANDLOT_EXECUTE_QUEUE_TIMEOUT": "3",
    }
    with serving(data_root / "sdk-small", f"t{os.getpid()}m", slot.subnet(60, 1), settings, verbose=False) as server:
        # The languages' versions are asked at start, in its one runner: wait for them, or the
        # first runs of a test would all start together once they are known.
        httpx.get(f"{server.url}/execute/languages", headers={"X-API-Key": server.key}, timeout=60).raise_for_status()
        yield server


@pytest.fixture
def sdk_env(sdk_server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """``SANDLOT_API_URL``/``SANDLOT_API_KEY`` pointing at the test server (for default constructors)."""
    monkeypatch.setenv("SANDLOT_API_URL", sdk_server.url)
    monkeypatch.setenv("SANDLOT_API_KEY", sdk_server.key)
    return sdk_server
