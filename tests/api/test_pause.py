"""Pause with memory, resume and fork through the control plane, with real CRIU and runc,
driven by the unmodified e2b SDK (2.63.0: `pause`, `connect` resuming or rebooting, `fork`)
and httpx where the SDK has no call (`POST /sandboxes/{id}/resume`). What a daemon killed in
the middle of them leaves is tests/api/test_crash.py's."""

from __future__ import annotations

import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from e2b import CommandHandle, PtySize, Sandbox
from e2b.exceptions import SandboxException
from e2b.sandbox.sandbox_api import SandboxQuery, SandboxState

from sandlot.store import models
from tests import conftest
from tests._support.server import Server
from tests.api import counter

pytestmark = [pytest.mark.usefixtures("e2b_env"), conftest.needs_criu]


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
    counter.start_counter(sbx)
    sbx.files.write("/home/user/before.txt", "kept")
    last = counter.count(sbx)
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
        value = counter.count(sbx)
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
    counter.start_counter(parent)
    parent.files.write("/home/user/who.txt", "parent")
    at_fork = counter.count(parent)
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
        assert counter.count(child) >= at_fork, (
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
    assert counter.count(children[1]) > 0 and counter.count(parent) > at_fork
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
    counter.start_counter(sbx)
    last = counter.count(sbx)
    deadline = time.monotonic() + 20
    while Sandbox.get_info(sid).state is not SandboxState.PAUSED:
        assert time.monotonic() < deadline, "the timer did not pause the sandbox"
        time.sleep(0.2)
    time.sleep(2)  # a paused sandbox has no timer: it is neither killed nor resumed
    assert Sandbox.get_info(sid).state is SandboxState.PAUSED
    resumed = Sandbox.connect(sid, timeout=60)
    assert Sandbox.get_info(sid).state is SandboxState.RUNNING
    assert counter.count(resumed) > last


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


def test_concurrent_pauses_and_resumes_never_hang(server: Server, cleanup: list[str]) -> None:
    """Issue 18: rounds of 20 pause/resume cycles across 8 sandboxes at once, each operation
    answered within seconds (a resume whose CRIU exit another operation reaped used to wait
    for ever), and every sandbox whole at the end: its processes went on."""
    with server.client() as client:
        ids = [client.post("/v2/sandboxes", json={"timeout": 300}).json()["sandboxID"] for _ in range(8)]
    cleanup.extend(ids)
    sandboxes = [Sandbox.connect(sid) for sid in ids]
    for sbx in sandboxes:
        sbx.commands.run("sleep 3600", background=True).disconnect()
    took: list[float] = []

    def cycles(sid: str, n: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=30) as client:
            for _ in range(n):
                for path, status in ((f"/sandboxes/{sid}/pause", 204), (f"/sandboxes/{sid}/connect", 201)):
                    started = time.monotonic()
                    answer = client.post(path, json={"timeout": 300})
                    took.append(time.monotonic() - started)
                    assert answer.status_code == status, (path, answer.text)

    for _ in range(5):
        share = [ids[i % len(ids)] for i in range(20)]
        with ThreadPoolExecutor(len(ids)) as pool:
            list(pool.map(cycles, ids, [share.count(sid) for sid in ids]))
    assert len(took) == 5 * 20 * 2
    assert max(took) < 15, f"an operation took {max(took):.1f} s"
    for sbx in sandboxes:
        assert "sleep 3600" in sbx.commands.run("ps -eo args").stdout


def test_restart_keeps_a_paused_sandbox_paused(
    server: Server, cleanup: list[str]
) -> None:
    sbx = Sandbox.create(timeout=120)
    cleanup.append(sbx.sandbox_id)
    counter.start_counter(sbx)
    sbx.files.write("/home/user/before.txt", "kept")
    last = counter.count(sbx)
    assert sbx.pause() is True
    assert server.stop() == 0
    server.start()
    os.environ["E2B_API_KEY"] = server.key  # the same key: it lives in the data dir
    info = Sandbox.get_info(sbx.sandbox_id)
    assert info.state is SandboxState.PAUSED
    resumed = Sandbox.connect(sbx.sandbox_id, timeout=60)
    assert counter.count(resumed) > last
    assert resumed.files.read("/home/user/before.txt") == "kept"


def test_timeout_pause_then_auto_resume_on_traffic(server: Server, cleanup: list[str]) -> None:
    """lifecycle on_timeout pause + auto_resume: the sandbox pauses at its end time, and a plain
    commands.run through the SDK (no connect) resumes it; its counter went on counting, and it
    lives its original timeout length again."""
    sbx = Sandbox.create(timeout=6, lifecycle={"on_timeout": "pause", "auto_resume": True})
    cleanup.append(sbx.sandbox_id)
    info = sbx.get_info()
    assert info.lifecycle == {"on_timeout": "pause", "auto_resume": True}
    counter.start_counter(sbx)
    last = counter.count(sbx)
    deadline = time.monotonic() + 20
    while Sandbox.get_info(sbx.sandbox_id).state is not SandboxState.PAUSED:
        assert time.monotonic() < deadline, "the timer did not pause the sandbox"
        time.sleep(0.2)
    assert _plane(server, sbx).status_code == 204, "a sandbox-plane request resumed it"
    info = sbx.get_info()
    assert info.state is SandboxState.RUNNING
    assert abs((info.end_at - datetime.now(UTC)).total_seconds() - 6) < 3, "its original 6 s again"
    with server.client() as client:
        assert client.get(f"/sandboxes/{sbx.sandbox_id}").json()["boot"] == "resume"
    assert counter.count(sbx) > last
    # Paused by its timer once more, then woken by the SDK's own first call.
    while Sandbox.get_info(sbx.sandbox_id).state is not SandboxState.PAUSED:
        assert time.monotonic() < deadline + 20, "the timer did not pause the sandbox again"
        time.sleep(0.2)
    assert sbx.commands.run("echo awake").stdout == "awake\n"
    assert Sandbox.get_info(sbx.sandbox_id).state is SandboxState.RUNNING


def test_auto_resume_needs_the_access_token(server: Server, cleanup: list[str]) -> None:
    with server.client() as client:
        made = client.post(
            "/v2/sandboxes", json={"timeout": 60, "autoPause": True, "autoResume": {"enabled": True}}
        ).json()
        sid = made["sandboxID"]
        cleanup.append(sid)
        assert client.get(f"/sandboxes/{sid}").json()["lifecycle"] == {"autoResume": True, "onTimeout": "pause"}
        assert client.post(f"/sandboxes/{sid}/pause").status_code == 204
        for token in (None, "wrong"):
            headers = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983"}
            if token is not None:
                headers["X-Access-Token"] = token
            answer = httpx.get(f"{server.url}/health", headers=headers, timeout=10)
            assert answer.status_code == 401
        assert client.get(f"/sandboxes/{sid}").json()["state"] == "paused", "no token, no resume"
        # Without auto-resume a sandbox-plane request finds a paused sandbox gone.
        plain = client.post("/v2/sandboxes", json={"timeout": 60}).json()
        cleanup.append(plain["sandboxID"])
        assert client.get(f"/sandboxes/{plain['sandboxID']}").json()["lifecycle"] == {
            "autoResume": False,
            "onTimeout": "kill",
        }
        assert client.post(f"/sandboxes/{plain['sandboxID']}/pause").status_code == 204
        gone = httpx.get(
            f"{server.url}/health",
            headers={"E2b-Sandbox-Id": plain["sandboxID"], "X-Access-Token": plain["envdAccessToken"]},
            timeout=10,
        )
        assert gone.status_code == 502
        assert client.get(f"/sandboxes/{plain['sandboxID']}").json()["state"] == "paused"


def test_boot_reports_how_processes_started(server: Server, cleanup: list[str]) -> None:
    with server.client() as client:
        sid = client.post("/v2/sandboxes", json={"timeout": 60}).json()["sandboxID"]
        cleanup.append(sid)

        def boot(sandbox_id: str) -> str:
            return str(client.get(f"/sandboxes/{sandbox_id}").json()["boot"])

        assert boot(sid) == "clean"
        child = client.post(f"/sandboxes/{sid}/fork", json={"count": 1}).json()[0]["sandbox"]["sandboxID"]
        cleanup.append(child)
        assert (boot(sid), boot(child)) == ("clean", "fork")
        assert client.post(f"/sandboxes/{child}/pause").status_code == 204
        assert boot(child) == "fork", "a paused sandbox keeps the boot of its processes"
        assert client.post(f"/sandboxes/{child}/connect", json={}).status_code == 201
        assert boot(child) == "resume"
    database = server.database
    try:
        with database.session() as session:
            assert session.get(models.SandboxRecord, child).boot == "resume"  # type: ignore[union-attr]
    finally:
        database.close()


def test_streams_end_cleanly_at_a_pause(server: Server, cleanup: list[str]) -> None:
    """An attached command's output and a PTY cannot survive a checkpoint (their host ends are
    outside what CRIU saves): at the pause each ends at once, with an error that says so (not
    a hang, not a 500), and its process goes on; after the resume it can be attached to again
    and is still printing."""
    sbx = Sandbox.create(timeout=120)
    cleanup.append(sbx.sandbox_id)
    printer = sbx.commands.run("i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done", background=True)
    terminal = sbx.pty.create(PtySize(rows=24, cols=80), timeout=0)
    ended: dict[str, tuple[BaseException | None, float]] = {}

    def follow(name: str, handle: CommandHandle) -> None:
        try:
            handle.wait(on_pty=lambda _: None)
            ended[name] = (None, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - what the SDK raised is the result
            ended[name] = (exc, time.monotonic())

    followers = [threading.Thread(target=follow, args=item) for item in (("command", printer), ("pty", terminal))]
    for thread in followers:
        thread.start()
    time.sleep(0.5)
    assert sbx.pause() is True
    paused_at = time.monotonic()
    for thread in followers:
        thread.join(15)
    assert sorted(ended) == ["command", "pty"], "both streams ended"
    for name, (exc, at) in ended.items():
        assert isinstance(exc, SandboxException) and "does not outlive a checkpoint" in str(exc), (name, exc)
        assert at - paused_at < 5, f"the {name} stream ended with the pause, not later"
    Sandbox.connect(sbx.sandbox_id, timeout=60)
    assert {p.pid for p in sbx.commands.list()} == {printer.pid, terminal.pid}, "the processes went on"
    numbers: list[int] = []
    again = sbx.commands.connect(printer.pid)
    for stdout, _, _ in again:
        numbers += [int(n) for n in (stdout or "").split()]
        if len(numbers) >= 3:
            break
    again.disconnect()
    assert numbers[0] > 3 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_connect_without_memory_boots_clean(server: Server, cleanup: list[str]) -> None:
    """The e2b SDK's ``connect(on_resume="reboot")`` sends ``memory: false``: a paused sandbox
    boots clean on its files instead of being restored; a running one is left alone."""
    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    counter.start_counter(sbx)
    counter.count(sbx)
    sbx.files.write("/home/user/kept.txt", "kept")
    assert sbx.pause() is True
    rebooted = Sandbox.connect(sbx.sandbox_id, timeout=120, on_resume="reboot")
    with server.client() as client:
        detail = client.get(f"/sandboxes/{sbx.sandbox_id}").json()
    assert (detail["state"], detail["boot"]) == ("running", "clean")
    assert abs((datetime.fromisoformat(detail["endAt"]) - datetime.now(UTC)).total_seconds() - 120) < 5
    assert rebooted.commands.list() == [], "no process of the checkpoint runs"
    assert rebooted.files.read("/home/user/kept.txt") == "kept"
    assert _snapshots(server, sbx.sandbox_id) == [], "the checkpoint is not used again"
    counter.start_counter(rebooted)
    value = counter.count(rebooted)
    Sandbox.connect(sbx.sandbox_id, on_resume="reboot")
    assert counter.count(rebooted) > value, "a running sandbox is left as it is"
    # The older resume route takes the same key (a sandlot extension there).
    assert rebooted.pause() is True
    with server.client() as client:
        answer = client.post(f"/sandboxes/{sbx.sandbox_id}/resume", json={"memory": False})
        assert answer.status_code == 201, answer.text
        assert client.get(f"/sandboxes/{sbx.sandbox_id}").json()["boot"] == "clean"
        assert client.post(f"/sandboxes/{sbx.sandbox_id}/resume", json={"memory": False}).status_code == 409
    assert rebooted.commands.list() == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest"])
def test_a_damaged_checkpoint_is_refused_and_the_sandbox_stays_paused(
    server: Server, cleanup: list[str], damage: str
) -> None:
    """Every image is checked against the manifest written at the pause before CRIU reads
    it: a damaged one is a clear error naming the file, the sandbox stays paused, and once
    the damage is undone it resumes with its memory."""
    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    counter.start_counter(sbx)
    before = counter.count(sbx)
    assert sbx.pause() is True
    [checkpoint] = _snapshots(server, sbx.sandbox_id)
    pages = max(checkpoint.glob("pages-*.img"), key=lambda p: p.stat().st_size)
    victim = {"flip": pages, "truncate": pages, "manifest": checkpoint / "manifest.json"}[damage]
    original = victim.read_bytes()
    if damage == "flip":
        victim.write_bytes(original[:4096] + bytes([original[4096] ^ 1]) + original[4097:])
    elif damage == "truncate":
        victim.write_bytes(original[: len(original) // 2])
    else:
        victim.unlink()
    with server.client() as client:
        answer = client.post(f"/sandboxes/{sbx.sandbox_id}/connect", json={})
        assert answer.status_code == 500, answer.text
        message = answer.json()["message"]
        assert "stays paused" in message
        assert (victim.name if damage != "manifest" else "no readable manifest") in message, message
        assert client.get(f"/sandboxes/{sbx.sandbox_id}").json()["state"] == "paused"
    victim.write_bytes(original)
    victim.chmod(0o644 if damage != "manifest" else 0o600)
    Sandbox.connect(sbx.sandbox_id, timeout=60)
    assert counter.count(sbx) > before
