"""Sandboxes for the SDK tests, one per test, killed afterwards (written once, for both flavours)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandlot import AsyncSandbox
from tests.sdk.servers import SdkServer


@pytest.fixture
async def sbx(sdk_server: SdkServer) -> AsyncIterator[AsyncSandbox]:
    async with await AsyncSandbox.create(timeout=300, config=sdk_server.config) as sandbox:
        yield sandbox
