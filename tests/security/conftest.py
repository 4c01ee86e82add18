"""The security tests' fixtures: a server of their own, and the runtime tests' sandboxes.

The server is not the api tests' server: both may run in one session, so this one has its own
data directory, runc instance name and subnet. The escape group runs on the runtime tests'
sandboxes: a real runc driver, real sandboxes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
