"""The security tests' fixtures: a server of their own, and the runtime tests' sandboxes.

The server is not the api tests' server: both may run in one session, so this one has its own
data directory, runc instance name and subnet. The escape group runs on the runtime tests'
sandboxes: a real runc driver, real sandboxes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b import Sandbox

from sandlot.runtime.drivers.runc import RuncDriver
from tests import slot
from tests._support.server import Server, serving
from tests.api.conftest import _server_before_census, cleanup, e2b_env, other_key
from tests.runtime.conftest import make_sandbox, sandbox
from tests.runtime.test_checkpoint import images

__all__ = [
    "_server_before_census",
    "cleanup",
    "e2b_env",
    "images",
    "make_sandbox",
    "other_key",
    "sandbox",
    "server",
]


@pytest.fixture(scope="session")
def server(data_root: Path, driver: RuncDriver) -> Iterator[Server]:
    """See tests/api/conftest.py `server`."""
    with serving(data_root / "security-server", f"t{os.getpid()}x", slot.subnet(180)) as srv:
        yield srv


@contextlib.contextmanager
def module_sandbox(server: Server, *, secure: bool = False) -> Iterator[Sandbox]:
    """One sandbox for a module's tests, killed at its end (the SDK pointed at the server here:
    `e2b_env` is per test)."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("E2B_API_URL", "E2B_SANDBOX_URL"):
            env.setenv(name, server.url)
        env.setenv("E2B_API_KEY", server.key)
        sandbox = Sandbox.create(timeout=300, api_key=server.key, secure=secure)
        try:
            yield sandbox
        finally:
            sandbox.kill()
