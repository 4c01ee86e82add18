"""Idle timeouts (``idleTimeout`` at create, a sandlot extension) with the real server, runc and
the e2b SDK: what counts as activity (docs/lifecycle.md) keeps a sandbox, nothing else does.

Only lists watch the sandboxes here: a list names no sandbox, so it is no activity."""

from __future__ import annotations

import threading
import time

import pytest
from e2b import Sandbox
from e2b.sandbox.sandbox_api import SandboxState

from tests._support.server import Server

pytestmark = pytest.mark.usefixtures("e2b_env")

IDLE = 4


def _create(server: Server, **body: object) -> tuple[str, float]:
    with server.client() as client:
        answer = client.post("/v2/sandboxes", json={"timeout": 120, "idleTimeout": IDLE, **body})
        assert answer.status_code == 201, answer.text
        return answer.json()["sandboxID"], time.monotonic()


class _Watch:
    """Polls the sandbox list and notes when each sandbox was first missing from it, or
    first seen paused."""

    def __init__(self, server: Server, ids: list[str]) -> None:
        self.server = server
        self.ids = ids
        self.gone: dict[str, float] = {}
        self.paused: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.server.client() as client:
            while not self._stop.is_set():
                sandboxes = client.get("/v2/sandboxes", params={"limit": 1000}).json()
                listed = {s["sandboxID"]: s["state"] for s in sandboxes}
                now = time.monotonic()
                for sid in self.ids:
                    if sid not in listed:
                        self.gone.setdefault(sid, now)
                    elif listed[sid] == "paused":
                        self.paused.setdefault(sid, now)
                time.sleep(0.2)

    def wait(self, done: dict[str, float], ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(s in done for s in ids):
            assert time.monotonic() < deadline, f"not all of {ids} in {done}"
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _ping_until(stop_at: float, ping: object) -> threading.Thread:
    def run() -> None:
        while time.monotonic() < stop_at:
            ping()  # type: ignore[operator]
            time.sleep(1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_what_keeps_a_sandbox_from_idling(server: Server, cleanup: list[str]) -> None:
    quiet, quiet_at = _create(server)
    control, _ = _create(server)
    plane, _ = _create(server)
    busy, _ = _create(server)
    cleanup.extend([quiet, control, plane, busy])
    with server.client() as client:
        assert client.get(f"/sandboxes/{quiet}").json()["idleTimeout"] == IDLE
    quiet_at = time.monotonic()  # that look was activity too
    sleeper = Sandbox.connect(busy)
    sleeper.commands.run("sleep 8", background=True).disconnect()
    sleep_ends = time.monotonic() + 8
    pings_end = time.monotonic() + 9
    plane_sbx = Sandbox.connect(plane)
    pingers = [
        _ping_until(pings_end, lambda: Sandbox.get_info(control)),
        _ping_until(pings_end, lambda: plane_sbx.files.list("/home/user")),
    ]
    watch = _Watch(server, [quiet, control, plane, busy])
    try:
        watch.wait(watch.gone, [quiet, control, plane, busy], timeout=40)
    finally:
        watch.stop()
        for thread in pingers:
            thread.join()
    assert IDLE - 0.5 <= watch.gone[quiet] - quiet_at <= IDLE + 3, "idle for idleTimeout, then killed"
    assert watch.gone[busy] >= sleep_ends + IDLE - 1.5, "a running command is activity until it ends"
    for sid in (control, plane):
        assert watch.gone[sid] >= pings_end + IDLE - 2.5, "requests on either plane are activity"
    assert max(watch.gone.values()) - pings_end <= IDLE + 5, "and each is ended once idle"


def test_idle_pause_and_a_paused_sandbox_being_looked_at(server: Server, cleanup: list[str]) -> None:
    sid, made_at = _create(server, autoPause=True)
    cleanup.append(sid)
    watch = _Watch(server, [sid])
    try:
        watch.wait(watch.paused, [sid], timeout=20)
    finally:
        watch.stop()
    assert IDLE - 0.5 <= watch.paused[sid] - made_at <= IDLE + 3
    before = Sandbox.get_info(sid)
    assert before.state is SandboxState.PAUSED
    # Looking at it (info, list, metrics) for longer than its idle timeout: it stays paused,
    # its end time stays put.
    looked_until = time.monotonic() + IDLE + 2
    while time.monotonic() < looked_until:
        info = Sandbox.get_info(sid)
        assert (info.state, info.end_at) == (SandboxState.PAUSED, before.end_at)
        assert Sandbox.get_metrics(sid) == []
        assert sid in {s.sandbox_id for s in Sandbox.list().next_items()}
        time.sleep(0.5)
    # A connect resumes it; then the idle clock starts again.
    resumed = Sandbox.connect(sid, timeout=120)
    assert resumed.get_info().state is SandboxState.RUNNING
    watch = _Watch(server, [sid])
    try:
        watch.wait(watch.paused, [sid], timeout=20)
    finally:
        watch.stop()


def test_idle_timeout_bad_inputs(server: Server) -> None:
    with server.client() as client:
        for body in ({"idleTimeout": -1}, {"idleTimeout": "soon"}, {"idleTimeout": 2**40}):
            answer = client.post("/v2/sandboxes", json=body)
            assert answer.status_code == 400 and answer.json()["code"] == 400, answer.text
        off = client.post("/v2/sandboxes", json={"timeout": 30, "idleTimeout": 0}).json()["sandboxID"]
        try:
            assert "idleTimeout" not in client.get(f"/sandboxes/{off}").json(), "0 is off"
        finally:
            assert client.delete(f"/sandboxes/{off}").status_code == 204
