# Generated from tests/sdk/_async/helpers.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""Small helpers for the SDK tests (written once, for both flavours)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sandlot.sdk import _synchronization


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "the condition") -> None:
    """Poll ``check`` until it holds; output arrives on another task (thread in the sync SDK)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        _synchronization.sleep(0.05)
