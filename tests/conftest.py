"""Fixtures shared by every test: a real runc driver and the leak check around each test.

The leak check takes a census (tests/_support/census.py) of what a sandbox can leave on the
host (mounts, loop devices, network namespaces, links, runc containers, cgroups, nftables
chains, child processes) before and after each test, and fails the test if anything new is
left. It counts only objects of this test run's driver instance, so other work on the machine
does not disturb it. `census`, `EMPTY`, `HELPERS` and `_descendants` are imported from there
under the names tests have always used.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandlot.config import RuntimeSettings, Settings
from sandlot.runtime import _utils
from sandlot.runtime.drivers.runc import RuncDriver
from tests import slot
from tests._support.census import EMPTY, HELPERS, census
from tests._support.census import descendants as _descendants
from tests._support.server import scratch_dir

__all__ = ["EMPTY", "HELPERS", "_descendants", "census", "needs_criu", "test_settings"]

pytest_plugins = ["tests.sdk.servers"]


needs_criu = pytest.mark.skipif(
    not (Path(os.environ.get("SANDLOT_CACHE_DIR", "/var/cache/sandlot")) / "criu" / "current" / "criu").exists(),
    reason="CRIU is not built (scripts/setup builds it)",
)
"""Marks tests that checkpoint or restore sandboxes."""


def test_settings(data_dir: Path, instance: str) -> RuntimeSettings:
    """Settings for a driver of this test run: its own data dir, instance name and subnet."""
    base = Settings.from_env().runtime
    return dataclasses.replace(
        base,
        data_dir=data_dir,
        instance=instance,
        subnet=slot.subnet(200, 0 if instance.endswith("a") else 1),
        internet_default=False,
    )


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def data_root() -> Iterator[Path]:
    """Sandbox data of this run (see `scratch_dir` for where and why)."""
    with scratch_dir("sandlot-test-") as path:
        yield path


@pytest.fixture(scope="session")
async def driver(data_root: Path) -> AsyncIterator[RuncDriver]:
    settings = test_settings(data_root / "main", f"t{os.getpid()}a")
    async with RuncDriver(settings) as d:
        yield d
        await d.reconcile(known=())
    leaks = census(d).leaks_since(EMPTY)
    assert not leaks, f"the driver left host objects behind: {leaks}"
    out = subprocess.run(["nft", "list", "table", "inet", d.network.table], capture_output=True)  # noqa: ASYNC221 - the session is over: nothing else waits on the loop
    assert out.returncode != 0, "the driver's nftables table is still there after aclose()"
    parents = list(Path("/sys/fs/cgroup").glob(f"*/sandlot-{d.settings.instance}"))
    assert not parents, f"the driver's cgroup parents are still there after aclose(): {parents}"


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves a host object of the session's driver behind."""
    if "driver" not in request.fixturenames:
        yield
        # Once a driver has made this process a subreaper, it inherits the orphans of every
        # test, such as a dpkg left by a deliberately interrupted template build; outside
        # tests those go to the host's init. Nothing of such a test is still being waited for.
        _utils.reap_orphans_now()
        return
    d: RuncDriver = request.getfixturevalue("driver")
    before = census(d)
    yield
    leaks = census(d).leaks_since(before)
    assert not leaks, f"test left host objects behind: {leaks}"
