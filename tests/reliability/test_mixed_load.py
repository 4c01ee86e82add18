"""Issue 18's mixed loop for 2 minutes with 0 errors, through the unmodified e2b SDK.

16 clients for 120 s against one real `sandlot serve` of their own, each looping create ->
three commands -> write and read a file -> (one loop in five) pause, then
`AsyncSandbox.connect` -> kill (bench/load.py). On the code before issue 18's fix some
resumes never answered (a concurrent CRIU restore's exit status was reaped by another
operation); every call here has a 60 s deadline, so such a hang is an error, and no single
operation may take more than 30 s. Afterwards the server is stopped with SIGTERM and must exit
0, and the leak census of its instance must be empty (`bench.load.served`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import load
from tests import conftest

pytestmark = [conftest.needs_criu, pytest.mark.slow]

CLIENTS = 16
SECONDS = 120
HANG = 30


async def test_mixed_loop_for_two_minutes_has_no_errors(data_root: Path) -> None:
    with load.served(data_root, "x") as server:
        report = await load.run(server.url, server.key, clients=CLIENTS, seconds=SECONDS)
    print(report.summary())
    assert report.errors == [], report.summary()
    assert report.loops >= CLIENTS, f"the clients hardly looped: {report.summary()}"
    assert report.slowest() < HANG, f"an operation took {report.slowest():.1f} s: {report.summary()}"
