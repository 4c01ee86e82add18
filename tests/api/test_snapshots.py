"""Named snapshots through the unmodified e2b SDK (2.63.0: `create_snapshot`, `list_snapshots`,
`delete_snapshot`, `Sandbox.create(snapshot_id)`), with real CRIU, runc and SQLite, and their
bad inputs over plain HTTP."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import httpx
import pytest
from e2b import Sandbox
from e2b.exceptions import SandboxException

from tests import conftest
from tests._support.server import Server
from tests.api import counter

pytestmark = [pytest.mark.usefixtures("e2b_env"), conftest.needs_criu]


def _detail(server: Server, sandbox_id: str) -> dict[str, object]:
    with server.client() as client:
        return dict(client.get(f"/sandboxes/{sandbox_id}").json())


def _listed(server: Server, **params: str) -> list[dict[str, object]]:
    with server.client() as client:
        answer = client.get("/snapshots", params=params)
        assert answer.status_code == 200, answer.text
        return list(answer.json())


def _http_code(sbx: Sandbox) -> str:
    """What the counter's port answers: ``000`` when nothing listens."""
    command = "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ || true"
    return sbx.commands.run(command, timeout=10).stdout


def _store_dir(server: Server, snapshot_id: str) -> Path | None:
    """The snapshot's directory in the store, found by its manifest."""
    named = server.data_dir / "snapshots" / "named"
    for entry in named.iterdir():
        manifest = entry / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text())["snapshot"] == snapshot_id:
            return entry
    return None


def test_memory_and_filesystem_snapshots(server: Server, cleanup: list[str]) -> None:
    source = Sandbox.create(timeout=120, envs={"FROM": "source"})
    cleanup.append(source.sandbox_id)
    counter.start_counter(source)
    source.files.write("/home/user/note.txt", "at snapshot")
    before = counter.count(source)

    full = source.create_snapshot()
    name, tag = full.snapshot_id.split(":")
    assert name.startswith("snap-") and tag == "v1" and full.names == [full.snapshot_id]
    files = source.create_snapshot(name="files-only", mode="filesystem")
    assert files.snapshot_id == "files-only:v1"
    # The source goes on; what it does from now on is in no snapshot.
    assert counter.count(source) > before
    source.files.write("/home/user/note.txt", "after snapshot")

    listed = {s.snapshot_id for s in source.list_snapshots().next_items()}
    assert listed == {full.snapshot_id, files.snapshot_id}
    assert [s.snapshot_id for s in Sandbox.list_snapshots(name="files-only").next_items()] == ["files-only:v1"]
    shapes = {s["snapshotID"]: s for s in _listed(server, sandboxID=source.sandbox_id)}
    assert shapes[full.snapshot_id]["memory"] is True and shapes[files.snapshot_id]["memory"] is False
    assert all(s["sandboxID"] == source.sandbox_id and int(s["sizeBytes"]) > 0 for s in shapes.values())
    store = _store_dir(server, full.snapshot_id)
    assert store is not None
    manifest = json.loads((store / "manifest.json").read_text())
    assert {"disk.img", "runtime.json"} <= set(manifest["files"]) and manifest["memory"] is True
    assert any(f.startswith("memory/") for f in manifest["files"])

    # Two sandboxes from the memory snapshot: the counter and the file came along.
    a = Sandbox.create(full.snapshot_id, timeout=120)
    cleanup.append(a.sandbox_id)
    b = Sandbox.create(name, timeout=120)  # the bare name: its newest version
    cleanup.append(b.sandbox_id)
    for sbx in (a, b):
        assert _detail(server, sbx.sandbox_id)["boot"] == "fork"
        assert before <= counter.count(sbx)
        assert sbx.files.read("/home/user/note.txt") == "at snapshot"
        assert sbx.commands.run("echo $FROM").stdout == "source\n", "the snapshot's environment"
    # ...and they diverge.
    a.files.write("/home/user/note.txt", "a")
    b.files.write("/home/user/note.txt", "b")
    a.commands.run("pkill -f '[c]ounter.py'", user="root")
    assert (a.files.read("/home/user/note.txt"), b.files.read("/home/user/note.txt")) == ("a", "b")
    assert counter.count(b) > before
    assert _http_code(a) == "000", "a's counter is gone, b's goes on"
    assert source.files.read("/home/user/note.txt") == "after snapshot"

    # From the filesystem snapshot: the files, no process.
    c = Sandbox.create("files-only", timeout=120)
    cleanup.append(c.sandbox_id)
    assert _detail(server, c.sandbox_id)["boot"] == "clean"
    assert c.files.read("/home/user/note.txt") == "at snapshot"
    assert c.commands.list() == []
    assert _http_code(c) == "000"

    # Deleting the snapshots leaves what was made from them whole and working.
    assert Sandbox.delete_snapshot(full.snapshot_id) is True
    assert Sandbox.delete_snapshot(full.snapshot_id) is False
    assert Sandbox.delete_snapshot("files-only") is True
    assert source.list_snapshots().next_items() == []
    assert _store_dir(server, full.snapshot_id) is None and not store.exists()
    assert counter.count(b) > before
    for sbx, text in ((a, "a"), (b, "b"), (c, "at snapshot")):
        assert sbx.files.read("/home/user/note.txt") == text
        assert sbx.commands.run("echo alive").stdout == "alive\n"
    for gone in (full.snapshot_id, name, "files-only:v1"):
        with pytest.raises(SandboxException) as failed:
            Sandbox.create(gone)
        assert failed.value.status_code == 404  # type: ignore[attr-defined]


def test_versions_of_a_name(server: Server, cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=120)
    cleanup.append(sbx.sandbox_id)
    tags = []
    for i in range(3):
        sbx.files.write("/home/user/version.txt", str(i))
        tags.append(sbx.create_snapshot(name="versioned", mode="filesystem").snapshot_id)
    assert tags == ["versioned:v1", "versioned:v2", "versioned:v3"]
    assert Sandbox.delete_snapshot("versioned:v3") is True
    assert sbx.create_snapshot(name="versioned", mode="filesystem").snapshot_id == "versioned:v4", (
        "a tag never names a second snapshot"
    )
    newest = Sandbox.create("versioned", timeout=60)
    cleanup.append(newest.sandbox_id)
    assert newest.files.read("/home/user/version.txt") == "2"
    first = Sandbox.create("versioned:v1", timeout=60)
    cleanup.append(first.sandbox_id)
    assert first.files.read("/home/user/version.txt") == "0"
    # Paging, newest first, by X-Next-Token.
    paginator = Sandbox.list_snapshots(name="versioned", limit=2)
    pages = [[s.snapshot_id for s in paginator.next_items()]]
    while paginator.has_next:
        pages.append([s.snapshot_id for s in paginator.next_items()])
    assert pages == [["versioned:v4", "versioned:v2"], ["versioned:v1"]]
    assert Sandbox.delete_snapshot("versioned") is True, "a bare name deletes every version"
    assert Sandbox.list_snapshots(name="versioned").next_items() == []


def test_delete_racing_creates_from_the_snapshot(server: Server, cleanup: list[str]) -> None:
    """Creates from a snapshot while it is deleted: each create either makes a whole working
    sandbox or answers 404, and the snapshot's files are gone once the creates are done."""
    source = Sandbox.create(timeout=120)
    cleanup.append(source.sandbox_id)
    source.files.write("/home/user/raced.txt", "whole")
    snap = source.create_snapshot(name="raced").snapshot_id
    store = _store_dir(server, snap)
    assert store is not None

    def create() -> str | None:
        try:
            made = Sandbox.create(snap, timeout=60)
        except SandboxException as exc:
            assert exc.status_code == 404, exc  # type: ignore[attr-defined]
            return None
        cleanup.append(made.sandbox_id)
        return made.sandbox_id

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        creates = [pool.submit(create) for _ in range(2)]
        deleted = pool.submit(Sandbox.delete_snapshot, snap)
        made = [f.result() for f in creates]
    assert deleted.result() is True
    for sandbox_id in made:
        if sandbox_id is not None:
            sbx = Sandbox.connect(sandbox_id)
            assert sbx.files.read("/home/user/raced.txt") == "whole"
            assert _detail(server, sandbox_id)["boot"] == "fork"
    assert not store.exists()
    with pytest.raises(SandboxException):
        Sandbox.create(snap)


def test_snapshot_bad_inputs(server: Server, cleanup: list[str], other_key: str) -> None:
    with server.client() as client:

        def error(response: httpx.Response, status: int) -> None:
            assert response.status_code == status, response.text
            body = response.json()
            assert body["code"] == status and body["message"], body

        error(client.post("/sandboxes/nosuchsandbox/snapshots", json={}), 404)
        sid = client.post("/v2/sandboxes", json={"timeout": 60}).json()["sandboxID"]
        cleanup.append(sid)
        for body in ({"name": "Bad Name"}, {"name": "-x"}, {"name": "a" * 65}, {"name": 5}, {"memory": "maybe"}):
            error(client.post(f"/sandboxes/{sid}/snapshots", json=body), 400)
        error(
            client.post(f"/sandboxes/{sid}/snapshots", content=b"{nope", headers={"content-type": "application/json"}),
            400,
        )
        error(client.post(f"/sandboxes/{sid}/snapshots", json={"name": "base"}), 409)
        assert client.post(f"/sandboxes/{sid}/pause").status_code == 204
        error(client.post(f"/sandboxes/{sid}/snapshots", json={}), 409)
        error(client.get("/snapshots", params={"limit": 0}), 400)
        error(client.get("/snapshots", params={"nextToken": "garbage!"}), 400)
        error(client.get("/snapshots", params={"name": "a:b"}), 400)
        error(client.delete("/templates/nosuchsnapshot"), 404)
        error(client.delete("/templates/nosuchsnapshot:v1"), 404)
        error(client.delete("/templates/bad:tag"), 400)
        error(client.post("/v2/sandboxes", json={"templateID": "nosuchsnapshot:v1"}), 404)
        error(client.post("/v2/sandboxes", json={"templateID": "x:y"}), 400)
        error(client.post("/v2/sandboxes", json={"templateID": "x:v0"}), 400)
        assert client.post(f"/v2/sandboxes/{sid}/connect", json={}).status_code == 201
        made = client.post(f"/sandboxes/{sid}/snapshots", json={"name": "limits", "memory": False})
        assert made.status_code == 201, made.text
        assert set(made.json()) == {"snapshotID", "names", "sandboxID", "memory", "createdAt", "sizeBytes"}
        error(client.post("/v2/sandboxes", json={"templateID": "limits", "memoryMB": 1024}), 400)
        # Another team sees none of it.
        with server.client(other_key) as stranger:
            assert stranger.get("/snapshots").json() == []
            error(stranger.post("/v2/sandboxes", json={"templateID": "limits:v1"}), 404)
            error(stranger.post(f"/sandboxes/{sid}/snapshots", json={}), 404)
            error(stranger.delete("/templates/limits"), 404)
        assert client.delete("/templates/limits").status_code == 204
    # The SDK's view of the same errors.
    with pytest.raises(SandboxException):
        Sandbox.create_snapshot(sid, name="Bad Name")
    assert Sandbox.delete_snapshot("nosuchsnapshot") is False
    # Nothing half-made was left in the store.
    named = server.data_dir / "snapshots" / "named"
    assert [e.name for e in named.iterdir() if e.name.endswith(".partial")] == []
