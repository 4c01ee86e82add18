"""Chaos, the short version CI runs (bench/chaos.py --rounds 50 is the full one): the server
SIGKILLed at 3 random moments under 8 looping clients (create, commands, files, pause,
connect, fork, kill), and started again each time. After each restart every sandbox the
server lists is whole (connect, running, a command runs, the file its client wrote reads back
the same), every one a client held that is not listed is cleanly ended (404, no container,
cgroup or mount of it); at the end the leak census of the server's instance is empty.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import chaos, load
from tests import conftest

pytestmark = [conftest.needs_criu, pytest.mark.slow]


async def test_sigkill_under_load_leaves_every_sandbox_whole_or_ended(data_root: Path) -> None:
    with load.served(data_root, "y", half=1) as server:
        report = await chaos.chaos(server, rounds=3, clients=8)
    print(report.summary())
    assert report.problems == [], report.summary()
    assert report.load.loops > 0, "the clients never finished a loop between the kills"
