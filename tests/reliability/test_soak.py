"""Soak, the short version CI runs (bench/soak.py --minutes 10 --clients 32 is the full one):
the mixed load of 8 clients for 60 s with 0 errors, the server's RSS growing at most 10 %
from the end of the warm-up to the end, and an empty leak census afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import load, soak
from tests import conftest

pytestmark = [conftest.needs_criu, pytest.mark.slow]


async def test_soak_has_no_errors_and_bounded_memory(data_root: Path) -> None:
    with load.served(data_root, "z") as server:
        report = await soak.soak(server, clients=8, seconds=60)
    print(report.summary())
    assert report.load.errors == [], report.summary()
    assert report.growth <= soak.GROWTH_LIMIT, report.summary()
