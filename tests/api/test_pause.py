"""Pause with memory, resume and fork through the control plane, with real CRIU and runc,
driven by the unmodified e2b SDK (2.63.0: `pause`, `connect` resuming, `fork`) and httpx
where the SDK has no call (`POST /sandboxes/{id}/resume`)."""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from e2b import CommandExitException, Sandbox
from e2b.sandbox.sandbox_api import SandboxQuery, SandboxState

from tests.runtime.test_checkpoint import COUNTER  # in memory only, served on :8080
from tests.api.conftest import Server

pytestmark = [
    pytest.mark.usefixtures("e2b_env"),
    pytest.mark.skipif(
        not (
            Path(os.environ.get("SANDLOT_CACHE_DIR", "/var/cache/sandlot"))
            / "criu"
            / "current"
            / "criu"
        ).exists(),
        reason="CRIU is not built (scripts/setup builds it)",
    ),
]



def _start_counter(sbx: Sandbox) -> None:
    sbx.files.write("/home/user/counter.py", COUNTER)
    handle = sbx.commands.run("python3 /home/user/counter.py", background=True)
    handle.disconnect()  # it runs on without anyone attached


def _count(sbx: Sandbox) -> int:
    """The counter's value, read over HTTP from inside the sandbox."""
    for _ in range(50):
        try:
            out = sbx.commands.run("curl -sf http://127.0.0.1:8080/", timeout=10)
            return int(out.stdout)
        except (CommandExitException, ValueError):
            time.sleep(0.1)
    raise AssertionError("the counter never answered")


def _plane(server: Server, sbx: Sandbox) -> httpx.Response:
    return httpx.get(
        f"{server.url}/health",
        headers={
            "E2b-Sandbox-Id": sbx.sandbox_id,
            "E2b-Sandbox-Port": "49983",
            "X-Access-Token": sbx._envd_access_token or "",
        },
        timeout=10,
    )


def _snapshots(server: Server, sandbox_id: str) -> list[Path]:
    sdir = server.data_dir / "snapshots" / sandbox_id
    return sorted(sdir.iterdir()) if sdir.exists() else []


def test_memory_and_files_survive_three_pauses(
    server: Server, cleanup: list[str]
) -> None:
    sbx = Sandbox.create(timeout=120)
    cleanup.append(sbx.sandbox_id)
    _start_counter(sbx)
    sbx.files.write("/home/user/before.txt", "kept")
    last = _count(sbx)
    for i in range(3):
        assert sbx.pause() is True
        assert len(_snapshots(server, sbx.sandbox_id)) == 1, (
            "one checkpoint in the store"
        )
        gone = _plane(server, sbx)
        assert (gone.status_code, gone.json()) == (
            502,
            {"code": 502, "message": "The sandbox was not found"},
        )
        assert sbx.pause() is False, (
            "pausing a paused sandbox is E2B's 'already paused'"
        )
        time.sleep(0.3)
        # Connect resumes it (201); the SDK's instance is usable again.
        with server.client() as client:
            answer = client.post(
                f"/v2/sandboxes/{sbx.sandbox_id}/connect", json={"timeout": 120}
            )
        assert answer.status_code == 201, answer.text
        assert answer.json()["sandboxID"] == sbx.sandbox_id
        assert _plane(server, sbx).status_code == 204
        value = _count(sbx)
        assert value > last, f"round {i}: the counter went from {last} to {value}"
        last = value
        assert sbx.files.read("/home/user/before.txt") == "kept"
        sbx.files.write(f"/home/user/round{i}.txt", str(i))
    for i in range(3):
        assert sbx.files.read(f"/home/user/round{i}.txt") == str(i)
    assert _snapshots(server, sbx.sandbox_id) == [], "a resume spends its checkpoint"
    # Connect on a running sandbox answers 200 and resumes nothing.
    with server.client() as client:
        assert (
            client.post(f"/v2/sandboxes/{sbx.sandbox_id}/connect", json={}).status_code
            == 200
        )


def test_looking_at_a_paused_sandbox_never_resumes_it(
    server: Server, cleanup: list[str]
) -> None:
    sbx = Sandbox.create(timeout=60, metadata={"suite": "pause-look"})
    cleanup.append(sbx.sandbox_id)
    sbx.pause()
    before = Sandbox.get_info(sbx.sandbox_id)
    assert before.state is SandboxState.PAUSED
    for _ in range(3):
        info = Sandbox.get_info(sbx.sandbox_id)
        assert info.state is SandboxState.PAUSED and info.end_at == before.end_at
        listed = Sandbox.list(
            query=SandboxQuery(metadata={"suite": "pause-look"})
        ).next_items()
        assert [(s.sandbox_id, s.state) for s in listed] == [
            (sbx.sandbox_id, SandboxState.PAUSED)
        ]
        paused = Sandbox.list(
            query=SandboxQuery(
                metadata={"suite": "pause-look"}, state=[SandboxState.PAUSED]
            )
        ).next_items()
        assert [s.sandbox_id for s in paused] == [sbx.sandbox_id]
        assert (
            Sandbox.list(
                query=SandboxQuery(
                    metadata={"suite": "pause-look"}, state=[SandboxState.RUNNING]
                )
            ).next_items()
            == []
        )
        assert sbx.get_metrics() == []
    with server.client() as client:
        v1 = client.get("/sandboxes").json()
        assert sbx.sandbox_id not in {s["sandboxID"] for s in v1}, (
            "the v1 list is running only"
        )
    assert Sandbox.get_info(sbx.sandbox_id).state is SandboxState.PAUSED
    # The older resume route: 201, then 409 because it runs.
    with server.client() as client:
        resumed = client.post(
            f"/sandboxes/{sbx.sandbox_id}/resume", json={"timeout": 30}
        )
        assert (
            resumed.status_code == 201 and resumed.json()["sandboxID"] == sbx.sandbox_id
        )
        again = client.post(f"/sandboxes/{sbx.sandbox_id}/resume", json={})
        assert again.status_code == 409 and again.json()["code"] == 409
    info = Sandbox.get_info(sbx.sandbox_id)
    assert info.state is SandboxState.RUNNING
    assert abs((info.end_at - datetime.now(UTC)).total_seconds() - 30) < 5
    assert sbx.commands.run("echo back").stdout == "back\n"


def test_pause_errors(server: Server, cleanup: list[str]) -> None:
    with server.client() as client:
        missing = client.post("/sandboxes/nosuchsandbox/pause", json={})
        assert (missing.status_code, missing.json()["code"]) == (404, 404)
        assert (
            client.post("/sandboxes/nosuchsandbox/resume", json={}).status_code == 404
        )
        assert (
            client.post("/sandboxes/nosuchsandbox/fork", json={"count": 1}).status_code
            == 404
        )
        sid = client.post("/v2/sandboxes", json={"timeout": 60}).json()["sandboxID"]
        cleanup.append(sid)
        assert client.post(f"/sandboxes/{sid}/pause", json={}).status_code == 204
        twice = client.post(f"/sandboxes/{sid}/pause", json={})
        assert twice.status_code == 409
        assert (
            twice.json()["code"] == 409 and "already paused" in twice.json()["message"]
        )
        fork = client.post(f"/sandboxes/{sid}/fork", json={"count": 1})
        assert fork.status_code == 409, (
            "a paused sandbox is resumed before it is forked"
        )


def test_kill_of_a_paused_sandbox_removes_its_checkpoint(
    server: Server, cleanup: list[str]
) -> None:
    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    sbx.pause()
    assert _snapshots(server, sbx.sandbox_id)
    assert sbx.kill() is True
    assert not (server.data_dir / "snapshots" / sbx.sandbox_id).exists()
    assert Sandbox.kill(sbx.sandbox_id) is False


def test_fork_children_diverge(server: Server, cleanup: list[str]) -> None:
    parent = Sandbox.create(timeout=120, metadata={"role": "parent"})
    cleanup.append(parent.sandbox_id)
    _start_counter(parent)
    parent.files.write("/home/user/who.txt", "parent")
    at_fork = _count(parent)
    children = parent.fork(count=2, timeout=90)
    assert all(isinstance(c, Sandbox) for c in children), children
    cleanup.extend(c.sandbox_id for c in children)
    ids = {c.sandbox_id for c in children}
    assert len(ids) == 2 and parent.sandbox_id not in ids
    for i, child in enumerate(children):
        info = child.get_info()
        assert info.state is SandboxState.RUNNING
        assert info.metadata == {"role": "parent", "forkedFrom": parent.sandbox_id}
        assert abs((info.end_at - datetime.now(UTC)).total_seconds() - 90) < 10
        assert (
            child._envd_access_token
            and child._envd_access_token != parent._envd_access_token
        )
        assert child.files.read("/home/user/who.txt") == "parent"
        assert _count(child) >= at_fork, (
            "the child's counter goes on from the parent's memory"
        )
        child.files.write("/home/user/who.txt", f"child{i}")
    assert parent.files.read("/home/user/who.txt") == "parent"
    assert [c.files.read("/home/user/who.txt") for c in children] == [
        "child0",
        "child1",
    ]
    # The children's processes run on their own: killing one kills nothing else.
    children[0].kill()
    assert _count(children[1]) > 0 and _count(parent) > at_fork
    assert _snapshots(server, parent.sandbox_id) == [], (
        "fork images are spent once restored"
    )


def test_timeout_with_auto_pause_pauses_then_connect_resumes(
    server: Server, cleanup: list[str]
) -> None:
    with server.client() as client:
        made = client.post("/v2/sandboxes", json={"timeout": 4, "autoPause": True})
        assert made.status_code == 201
        sid = made.json()["sandboxID"]
        cleanup.append(sid)
        assert (
            client.get(f"/sandboxes/{sid}").json()["lifecycle"]["onTimeout"] == "pause"
        )
    sbx = Sandbox.connect(
        sid, timeout=1
    )  # a connect never shortens, and this one extends nothing
    _start_counter(sbx)
    last = _count(sbx)
    deadline = time.monotonic() + 20
    while Sandbox.get_info(sid).state is not SandboxState.PAUSED:
        assert time.monotonic() < deadline, "the timer did not pause the sandbox"
        time.sleep(0.2)
    time.sleep(2)  # a paused sandbox has no timer: it is neither killed nor resumed
    assert Sandbox.get_info(sid).state is SandboxState.PAUSED
    resumed = Sandbox.connect(sid, timeout=60)
    assert Sandbox.get_info(sid).state is SandboxState.RUNNING
    assert _count(resumed) > last


def test_latencies_through_the_api(server: Server, cleanup: list[str]) -> None:
    """Pause, resume (connect) and fork of an idle sandbox, ten of each, p50 printed."""
    timings: dict[str, list[float]] = {"pause": [], "resume": [], "fork": []}
    with server.client() as client:
        sid = client.post("/v2/sandboxes", json={"timeout": 300}).json()["sandboxID"]
        cleanup.append(sid)
        for _ in range(10):
            t0 = time.perf_counter()
            assert client.post(f"/sandboxes/{sid}/pause", json={}).status_code == 204
            t1 = time.perf_counter()
            assert (
                client.post(f"/v2/sandboxes/{sid}/connect", json={}).status_code == 201
            )
            t2 = time.perf_counter()
            timings["pause"].append(t1 - t0)
            timings["resume"].append(t2 - t1)
        for _ in range(10):
            t0 = time.perf_counter()
            forked = client.post(f"/sandboxes/{sid}/fork", json={"count": 1})
            timings["fork"].append(time.perf_counter() - t0)
            assert forked.status_code == 201, forked.text
            child = forked.json()[0]["sandbox"]["sandboxID"]
            cleanup.append(child)
            assert client.delete(f"/sandboxes/{child}").status_code == 204
    summary = {k: round(statistics.median(v) * 1000) for k, v in timings.items()}
    print(f"\nAPI latencies p50 ms (idle sandbox, n=10): {summary}")


def test_restart_keeps_a_paused_sandbox_paused(
    server: Server, cleanup: list[str]
) -> None:
    sbx = Sandbox.create(timeout=120)
    cleanup.append(sbx.sandbox_id)
    _start_counter(sbx)
    sbx.files.write("/home/user/before.txt", "kept")
    last = _count(sbx)
    assert sbx.pause() is True
    assert server.stop() == 0
    server.start()
    os.environ["E2B_API_KEY"] = server.key  # the same key: it lives in the data dir
    info = Sandbox.get_info(sbx.sandbox_id)
    assert info.state is SandboxState.PAUSED
    resumed = Sandbox.connect(sbx.sandbox_id, timeout=60)
    assert _count(resumed) > last
    assert resumed.files.read("/home/user/before.txt") == "kept"
