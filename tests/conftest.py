"""Fixtures shared by every test: a real runc driver and the leak check around each test.

The leak check takes a census of what a sandbox can leave on the host (mounts, loop devices,
network namespaces, links, runc containers, cgroups, nftables chains, child processes) before
and after each test, and fails the test if anything new is left. It counts only objects of
this test run's driver instance, so other work on the machine does not disturb it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandlot.config import RuntimeSettings, Settings
from sandlot.runtime import _utils, cgroups
from sandlot.runtime.drivers.runc import RuncDriver
from tests import slot

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


@dataclasses.dataclass(frozen=True)
class Census:
    mounts: frozenset[str]
    loops: frozenset[str]
    netns: frozenset[str]
    links: frozenset[str]
    containers: frozenset[str]
    cgroups: frozenset[str]
    chains: frozenset[str]
    processes: frozenset[str]

    def leaks_since(self, before: Census) -> dict[str, list[str]]:
        leaks = {}
        for field in dataclasses.fields(self):
            new = getattr(self, field.name) - getattr(before, field.name)
            if new:
                leaks[field.name] = sorted(new)
        return leaks


def census(driver: RuncDriver) -> Census:
    data = str(driver.settings.data_dir)
    with open("/proc/self/mountinfo") as f:
        mounts = frozenset(
            line.split()[4] for line in f if line.split()[4].startswith(data)
        )
    loops = frozenset(
        p.name
        for p in Path("/sys/block").glob("loop*")
        if (p / "loop" / "backing_file").exists()
        and (p / "loop" / "backing_file").read_text().startswith(data)
    )
    netns = frozenset(n for n in _ls("/var/run/netns") if n.startswith("sandlot") and str(os.getpid()) in n)
    links = frozenset(n for n in _ls("/sys/class/net") if n.startswith(driver.network.veth_prefix))
    out = subprocess.run(
        ["runc", "--root", str(driver.settings.data_dir / "runc"), "list", "--format", "json"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    containers = frozenset(c["id"] for c in json.loads(out or "null") or [])
    groups = frozenset(
        str(c) for d in cgroups.cgroup_dirs(f"/sandlot-{driver.settings.instance}") for c in d.iterdir() if c.is_dir()
    )
    out = subprocess.run(
        ["nft", "-j", "list", "table", "inet", driver.network.table], capture_output=True, text=True
    ).stdout
    chains = frozenset(
        item["chain"]["name"]
        for item in (json.loads(out)["nftables"] if out else [])
        if "chain" in item and item["chain"]["name"].startswith("sb")
    )
    return Census(mounts, loops, netns, links, containers, groups, chains, _descendants())


def _ls(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


HELPERS: set[int] = set()
"""Pids of long-lived processes the session starts on purpose (the api tests' `sandlot serve`):
they and everything below them are not a test's leak. Their own fixtures census them."""


def _descendants() -> frozenset[str]:
    """Processes below this one (pid and command), zombies included, except `HELPERS`' trees
    and the host commands of this process's driver still at work (a spare disk's mkfs): those
    are reaped when the event loop runs again, which between tests it does not."""
    children: dict[int, list[int]] = {}
    names = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        names[int(entry)] = name
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            if child in HELPERS or child in _utils._WAITED:
                continue  # a helper, or a host command this process's driver waits for
            found.add(f"{child} {names[child]}")
            todo.append(child)
    return frozenset(found)


@pytest.fixture(scope="session")
def data_root() -> Iterator[Path]:
    """Sandbox data of this run. Not under pytest's tmp dir: that one is mode 0700, and root
    inside a sandbox (an unprivileged uid on the host) must be able to pass through."""
    path = Path(tempfile.mkdtemp(prefix="sandlot-test-", dir="/var/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="session")
async def driver(data_root: Path) -> AsyncIterator[RuncDriver]:
    settings = test_settings(data_root / "main", f"t{os.getpid()}a")
    async with RuncDriver(settings) as d:
        yield d
        await d.reconcile(known=())
    leaks = census(d).leaks_since(EMPTY)
    assert not leaks, f"the driver left host objects behind: {leaks}"
    out = subprocess.run(["nft", "list", "table", "inet", d.network.table], capture_output=True)
    assert out.returncode != 0, "the driver's nftables table is still there after aclose()"
    parents = list(Path("/sys/fs/cgroup").glob(f"*/sandlot-{d.settings.instance}"))
    assert not parents, f"the driver's cgroup parents are still there after aclose(): {parents}"


EMPTY = Census(*(frozenset(),) * len(dataclasses.fields(Census)))


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
