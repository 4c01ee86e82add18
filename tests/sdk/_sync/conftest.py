# Generated from tests/sdk/_async/conftest.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""Sandboxes for the SDK tests, one per test, killed afterwards (written once, for both flavours)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandlot import Sandbox
from tests.sdk.servers import SdkServer


@pytest.fixture
def sbx(sdk_server: SdkServer) -> Iterator[Sandbox]:
    with Sandbox.create(timeout=300, config=sdk_server.config) as sandbox:
        yield sandbox
