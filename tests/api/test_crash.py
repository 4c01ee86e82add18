"""Crash safety (issue 4 item 7): the daemon SIGKILLed at every step of a pause, resume, fork,
snapshot and create from a snapshot, then started again; each sandbox is running or paused
with a complete checkpoint, never lost and never half-made, and nothing is left on the host.

The steps are the crash points of `sandlot.runtime.faults`: each test runs its own
`sandlot serve` (its own data dir, runc instance and subnet) with ``SANDLOT_CRASH_AT`` naming
one, makes a sandbox through the e2b SDK whose counter lives only in memory and whose file
lives on its disk, asks for the operation over HTTP (the answer never comes: the server kills
itself at the point), and starts the server again without the variable. The sandbox is then
whole: in the state the table says, its counter counting on from where it was, its file there,
its disk writable, its network answering, and the operation works when asked again. At the end
every sandbox and snapshot is deleted through the API, the server stops, and the leak census
of tests/conftest.py must find nothing of its instance, nor any file in its data dir but the
store's.

The killed server's sandbox processes are handed to this process (the session's driver made
it a subreaper), as they would be to systemd; the second server adopts them, and once it has
killed them their zombies are reaped here.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from e2b import Sandbox

from sandlot.runtime import _utils
from tests import conftest, slot
from tests._support.server import Server, environment, leaks_of
from tests.api import counter

pytestmark = conftest.needs_criu

PAUSE = {
    # point: what the sandbox is after the restart
    "pause.frozen": "running",  # frozen, its veth deleted: thawed and wired again
    "pause.dumping": "running",  # runc checkpoint still at work: waited for, then as above
    "pause.dumped": "running",  # images sealed but not recorded: they are swept
    "pause.committed": "paused",  # recorded, processes alive and frozen: they are killed
    "pause.killed": "paused",  # killed, container and mounts left: released
    "pause.stopped": "paused",  # the driver is done, the store says running
}
RESUME = {
    "resume.mounted": "paused",  # disk and overlay mounted, nothing restored: unmounted
    "resume.restoring": "running",  # runc restore still at work: it finishes, adopted
    "resume.restored": "running",  # restored, state.json says checkpointed: adopted
    "resume.committed": "running",  # the driver is done, the store says paused
    "resume.recorded": "running",  # the store says running, the spent images are left
}
# Every other point leaves the source running and no copy of it.
FORK = ["fork.frozen", "fork.dumping", "fork.dumped", "fork.disk_frozen", "fork.mounted",
        "fork.restoring", "fork.restored", "fork.copied"]
SNAPSHOT = ["snapshot.frozen", "snapshot.dumping", "snapshot.dumped", "snapshot.disk_frozen",
            "snapshot.taken", "snapshot.moved"]
CREATE = ["create.mounted", "create.restoring", "create.restored"]

_instances = itertools.count()


@dataclasses.dataclass
class Crash:
    """One test's server, started with or without a crash point, and its sandbox."""

    server: Server
    monkeypatch: pytest.MonkeyPatch

    def start(self, point: str | None) -> Server:
        self.server.env = {k: v for k, v in self.server.env.items() if k != "SANDLOT_CRASH_AT"}
        if point is not None:
            self.server.env["SANDLOT_CRASH_AT"] = point
        self.server.start()
        for name in ("E2B_API_URL", "E2B_SANDBOX_URL"):
            self.monkeypatch.setenv(name, self.server.url)
        self.monkeypatch.setenv("E2B_API_KEY", self.server.key)
        return self.server

    def crash_in(self, method: str, path: str, body: object = None) -> None:
        """Ask for ``path``; the server must die of its crash point instead of answering."""
        with self.server.client() as client, pytest.raises(httpx.TransportError):
            answer = client.request(method, path, json=body if body is not None else {})
            pytest.fail(f"the server answered {answer.status_code} {answer.text[:300]}")
        assert self.server.wait(30) == -9, "the server died of its crash point"

    def sandbox(self) -> tuple[Sandbox, int]:
        """A sandbox with a counter in memory and a file on disk, and the counter's value."""
        sbx = Sandbox.create(timeout=300)
        counter.start_counter(sbx)
        sbx.files.write("/home/user/kept.txt", "kept")
        return sbx, counter.count(sbx)

    def state(self, sandbox_id: str) -> str:
        with self.server.client() as client:
            answer = client.get(f"/sandboxes/{sandbox_id}")
            assert answer.status_code == 200, answer.text
            return str(answer.json()["state"])

    def sandboxes(self) -> list[str]:
        with self.server.client() as client:
            return sorted(s["sandboxID"] for s in client.get("/v2/sandboxes", params={"limit": 1000}).json())

    def snapshots(self) -> list[str]:
        with self.server.client() as client:
            return sorted(s["snapshotID"] for s in client.get("/snapshots").json())


@pytest.fixture
def crash(data_root: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Crash]:
    n = next(_instances)
    data_dir = data_root / f"crash-{n}"
    data_dir.mkdir(mode=0o711)
    settings = {
        "SANDLOT_SPARES": "1",
        "SANDLOT_POOL_MAX": "0",
        "SANDLOT_EXECUTE_POOL_MIN": "0",
        "SANDLOT_EXECUTE_POOL_MAX": "1",
    }
    own = Server(data_dir, environment(f"t{os.getpid()}k{n}", slot.subnet(160), settings))
    test = Crash(own, monkeypatch)
    try:
        yield test
    finally:
        if own.process is None:
            test.start(None)
        with own.client() as client:
            for snapshot in test.snapshots():
                client.delete(f"/templates/{snapshot}")
            for sid in test.sandboxes():
                client.delete(f"/sandboxes/{sid}")
        assert test.sandboxes() == []
        assert own.stop() == 0, (data_dir / "server.log").read_text()[-3000:]
        _reap_sandbox_inits()
        leaks = leaks_of(own)
        assert not leaks, f"the server left host objects behind: {leaks}"
        left = sorted(str(p.relative_to(data_dir / "snapshots")) for p in (data_dir / "snapshots").rglob("*"))
        assert left == ["named"], f"the snapshot store kept {left}"
        assert not list((data_dir / "sandboxes").iterdir())


def _reap_sandbox_inits() -> None:
    """Reap the zombies of the killed server's sandboxes, handed to this process, once the
    second server has killed them (every sandbox process of the test is gone by then)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _utils.reap_orphans_now()
        if not any(_utils.zombie_children()) and not _children_named("init"):
            return
        time.sleep(0.05)


def _children_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(b")", 1)[1].split()
            if int(fields[1]) == os.getpid() and stat[stat.index(b"(") + 1 : stat.rindex(b")")] == name.encode():
                found.append(int(entry))
    return found


def _whole(crash: Crash, sbx: Sandbox, before: int) -> None:
    """Running (resumed if paused), counting on from ``before``, its file there, its disk
    writable (not left frozen), its sandbox plane answering (its veth wired)."""
    if crash.state(sbx.sandbox_id) == "paused":
        with crash.server.client() as client:
            assert client.post(f"/sandboxes/{sbx.sandbox_id}/connect", json={}).status_code == 201
    assert counter.count(sbx) > before, "the counter goes on from its value"
    assert sbx.files.read("/home/user/kept.txt") == "kept"
    written = sbx.commands.run("echo written > /home/user/new.txt && cat /home/user/new.txt", timeout=10)
    assert written.stdout == "written\n"


def _again(crash: Crash, what: Callable[[httpx.Client], httpx.Response]) -> None:
    with crash.server.client() as client:
        answer = what(client)
        assert answer.status_code < 300, answer.text


@pytest.mark.parametrize(("point", "after"), PAUSE.items(), ids=list(PAUSE))
def test_pause(crash: Crash, point: str, after: str) -> None:
    crash.start(point)
    sbx, before = crash.sandbox()
    crash.crash_in("POST", f"/sandboxes/{sbx.sandbox_id}/pause")
    crash.start(None)
    assert crash.state(sbx.sandbox_id) == after
    _whole(crash, sbx, before)
    _again(crash, lambda c: c.post(f"/sandboxes/{sbx.sandbox_id}/pause"))
    assert crash.state(sbx.sandbox_id) == "paused"
    _whole(crash, sbx, before)


@pytest.mark.parametrize(("point", "after"), RESUME.items(), ids=list(RESUME))
def test_resume(crash: Crash, point: str, after: str) -> None:
    crash.start(point)
    sbx, before = crash.sandbox()
    _again(crash, lambda c: c.post(f"/sandboxes/{sbx.sandbox_id}/pause"))
    crash.crash_in("POST", f"/sandboxes/{sbx.sandbox_id}/connect")
    crash.start(None)
    assert crash.state(sbx.sandbox_id) == after
    _whole(crash, sbx, before)
    checkpoints = crash.server.data_dir / "snapshots" / sbx.sandbox_id
    assert not checkpoints.exists() or not list(checkpoints.iterdir()), "a running sandbox keeps no checkpoint"


@pytest.mark.parametrize("point", FORK)
def test_fork(crash: Crash, point: str) -> None:
    crash.start(point)
    sbx, before = crash.sandbox()
    crash.crash_in("POST", f"/sandboxes/{sbx.sandbox_id}/fork", {"count": 2})
    crash.start(None)
    assert crash.sandboxes() == [sbx.sandbox_id], "no half-made copy is left"
    assert crash.state(sbx.sandbox_id) == "running"
    _whole(crash, sbx, before)
    _again(crash, lambda c: c.post(f"/sandboxes/{sbx.sandbox_id}/fork", json={"count": 1}))
    assert len(crash.sandboxes()) == 2


@pytest.mark.parametrize("point", SNAPSHOT)
def test_snapshot(crash: Crash, point: str) -> None:
    crash.start(point)
    sbx, before = crash.sandbox()
    crash.crash_in("POST", f"/sandboxes/{sbx.sandbox_id}/snapshots", {"name": "crash"})
    crash.start(None)
    assert crash.snapshots() == [], "no half-made snapshot is listed"
    assert crash.state(sbx.sandbox_id) == "running"
    _whole(crash, sbx, before)
    _again(crash, lambda c: c.post(f"/sandboxes/{sbx.sandbox_id}/snapshots", json={"name": "crash"}))
    assert crash.snapshots() == ["crash:v1"], "a version number a crash consumed is not skipped"


@pytest.mark.parametrize("point", CREATE)
def test_create_from_snapshot(crash: Crash, point: str) -> None:
    crash.start(point)
    sbx, before = crash.sandbox()
    _again(crash, lambda c: c.post(f"/sandboxes/{sbx.sandbox_id}/snapshots", json={"name": "crash"}))
    crash.crash_in("POST", "/v2/sandboxes", {"templateID": "crash:v1", "timeout": 60})
    crash.start(None)
    assert crash.sandboxes() == [sbx.sandbox_id], "no half-made sandbox is left"
    assert crash.snapshots() == ["crash:v1"]
    _whole(crash, sbx, before)
    made = Sandbox.create("crash:v1", timeout=60)
    assert counter.count(made) >= before, "the snapshot is whole: its memory restores"


def test_sigterm_with_operations_under_way_stops_within_10_s(crash: Crash) -> None:
    """Issue 18: SIGTERM while pauses and resumes go on; the server is gone within 10 s, and
    the next start finds every sandbox whole (running, or paused and resumable)."""
    crash.start(None)
    made = [crash.sandbox() for _ in range(4)]
    server = crash.server
    assert server.process is not None
    down = threading.Event()

    def toggle(sid: str) -> None:
        with server.client() as client:
            while not down.is_set():
                try:
                    for op in ("pause", "connect"):
                        client.post(f"/sandboxes/{sid}/{op}", json={})
                except httpx.TransportError:
                    return

    threads = [threading.Thread(target=toggle, args=(sbx.sandbox_id,)) for sbx, _ in made]
    for thread in threads:
        thread.start()
    time.sleep(1)
    started = time.monotonic()
    code = server.stop()
    took = time.monotonic() - started
    down.set()
    for thread in threads:
        thread.join(30)
    assert took < 10, f"the server took {took:.1f} s to stop"
    assert code == 0, (server.data_dir / "server.log").read_text()[-3000:]
    crash.start(None)
    for sbx, before in made:
        _whole(crash, sbx, before)
