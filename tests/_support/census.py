"""The leak census: what a sandbox can leave on the host, counted for one driver instance.

Mounts and loop devices under the driver's data directory, network namespaces of this test
run, links with the instance's veth prefix, runc containers, cgroups, nftables chains, and the
processes below this one. A census taken before and one after are compared with
`Census.leaks_since`; tests/conftest.py does it around every test, and `server.serving`
around every server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

from sandlot.runtime import _utils, cgroups
from sandlot.runtime.drivers.runc import RuncDriver

HELPERS: set[int] = set()
"""Pids of long-lived processes the session starts on purpose (a `sandlot serve`): they and
everything below them are not a test's leak. `server.Server` adds and removes its own."""


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


EMPTY = Census(*(frozenset(),) * len(dataclasses.fields(Census)))


def census(driver: RuncDriver) -> Census:
    data = str(driver.settings.data_dir)
    with open("/proc/self/mountinfo") as f:
        mounts = frozenset(line.split()[4] for line in f if line.split()[4].startswith(data))
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
        capture_output=True,
        text=True,
    ).stdout
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
    return Census(mounts, loops, netns, links, containers, groups, chains, descendants())


def _ls(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def descendants() -> frozenset[str]:
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
