"""The api tests' server: a real `sandlot serve` of tests/_support/server.py with its own runc
instance (``t<pid>s``), subnet and data directory, for the whole session.

The fixtures here (`server`, `other_key`, `e2b_env`, `cleanup`, `_server_before_census`) are
imported by the security tests' conftest too, which gives `server` a server of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot.runtime.drivers.runc import RuncDriver
from tests import slot
from tests._support.server import Server, serving


@pytest.fixture(scope="session")
def server(data_root: Path, driver: RuncDriver) -> Iterator[Server]:
    """The server. It asks for the session's `driver` only so that the driver's end-of-session
    census runs after the server (a child process of this one) has stopped."""
    with serving(data_root / "server", f"t{os.getpid()}s", slot.subnet(150), {"SANDLOT_SPARES": "1"}) as srv:
        yield srv


@pytest.fixture(scope="session", autouse=True)
def _server_before_census(server: Server) -> None:
    """Start the server before any test's leak census (tests/conftest.py `no_leaks`) is taken:
    the server process lives for the whole session and is not a test's leak."""


@pytest.fixture(scope="session")
def other_key(server: Server) -> str:
    """A key of a second team."""
    return server.new_team_key("other")


@pytest.fixture
def e2b_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The e2b SDK pointed at the server (docs/e2b-wire.md §1)."""
    monkeypatch.setenv("E2B_API_URL", server.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
    monkeypatch.setenv("E2B_API_KEY", server.key)
    return server


@pytest.fixture
def cleanup(server: Server) -> Iterator[list[str]]:
    """Ids of sandboxes a test makes; those still alive are killed after it."""
    made: list[str] = []
    yield made
    with server.client() as client:
        for sid in made:
            client.delete(f"/sandboxes/{sid}")
