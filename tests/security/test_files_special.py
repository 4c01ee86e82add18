"""The files API reads and writes only regular files, never waits on one, and keeps its caps.

A FIFO, a socket or a device node in a sandbox (the template's ``/dev/null`` is one, seen
from the host) gets a clear 400 at once; before, opening a FIFO took a server thread for good
and a device was opened on the host. A sandbox that keeps swapping a symlink between a file,
a FIFO and a host path gets answers, never a hang, and never a host file. Watchers are capped
per sandbox, in number and in watched directories. Real server, real sandboxes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2b import InvalidArgumentException, Sandbox

from sandlot.agent import filesystem
from tests._support.server import Server
from tests.security.conftest import module_sandbox

pytestmark = pytest.mark.usefixtures("e2b_env")


@pytest.fixture(scope="module")
def sbx(server: Server) -> Iterator[Sandbox]:
    with module_sandbox(server) as sandbox:
        yield sandbox


@pytest.fixture
def client(server: Server, sbx: Sandbox) -> Iterator[httpx.Client]:
    headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token or ""}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
        yield c


def _write(client: httpx.Client, path: str, **params: str) -> httpx.Response:
    return client.post(
        "/files", params={"path": path, **params}, content=b"x", headers={"content-type": "application/octet-stream"}
    )


def test_fifos_sockets_and_devices_are_a_clear_400(client: httpx.Client, sbx: Sandbox) -> None:
    sbx.commands.run(
        "mkfifo /tmp/fifo && python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('/tmp/sock')\""
    )
    cases = {
        "/tmp/fifo": "a FIFO",
        "/tmp/sock": "a socket",
        "/dev/null": "a character device",
        "/dev/zero": "a character device",
    }
    for path, kind in cases.items():
        for response in (
            client.get("/files", params={"path": path, "username": "root"}), _write(client, path, username="root")
        ):
            assert response.status_code == 400, (path, response.status_code, response.text)
            message = response.json()["message"]
            assert kind in message and "only regular files" in message, message
    with pytest.raises(InvalidArgumentException, match="a FIFO"):
        sbx.files.read("/tmp/fifo", request_timeout=10)
    with pytest.raises(InvalidArgumentException, match="a FIFO"):
        sbx.files.write("/tmp/fifo", "x", request_timeout=10)


def test_a_symlink_swapped_under_the_api_never_hangs_nor_leaves(
    client: httpx.Client, sbx: Sandbox, data_root: Path
) -> None:
    canary = data_root / "race-canary"
    canary.write_text("host secret")
    canary.chmod(0o666)
    before = canary.stat()
    sbx.commands.run("mkdir -p /tmp/race && mkfifo /tmp/race/fifo && echo inside > /tmp/race/reg")
    swapper = sbx.commands.run(
        f"while :; do ln -sfn fifo /tmp/race/f; ln -sfn reg /tmp/race/f; ln -sfn {canary} /tmp/race/f;"
        " ln -sfn /dev/null /tmp/race/f; done",
        background=True,
    )
    try:
        seen = set()
        for _ in range(60):
            read = client.get("/files", params={"path": "/tmp/race/f"})
            assert read.status_code in (200, 400, 404), read.text
            assert b"host secret" not in read.content
            write = _write(client, "/tmp/race/f")
            assert write.status_code in (200, 400, 404), write.text
            seen |= {read.status_code, write.status_code}
        assert 400 in seen, "the swap never showed the API a FIFO"
    finally:
        swapper.kill()
    assert canary.read_text() == "host secret"
    after = canary.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def _rpc(client: httpx.Client, method: str, message: dict) -> httpx.Response:
    return client.post(
        f"/filesystem.Filesystem/{method}", content=json.dumps(message), headers={"content-type": "application/json"}
    )


def test_watchers_are_capped_per_sandbox(client: httpx.Client, sbx: Sandbox) -> None:
    sbx.commands.run(f"mkdir -p /tmp/many && cd /tmp/many && seq 1 {filesystem.MAX_WATCHES + 10} | xargs mkdir")
    deep = _rpc(client, "CreateWatcher", {"path": "/tmp/many", "recursive": True})
    assert deep.status_code == 429, deep.text
    assert deep.json()["code"] == "resource_exhausted" and "directories" in deep.json()["message"]

    ids = []
    for _ in range(filesystem.MAX_WATCHERS):
        made = _rpc(client, "CreateWatcher", {"path": "/tmp/many"})
        assert made.status_code == 200, made.text
        ids.append(made.json()["watcherId"])
    over = _rpc(client, "CreateWatcher", {"path": "/tmp"})
    assert over.status_code == 429 and "watchers" in over.json()["message"], over.text
    assert _rpc(client, "RemoveWatcher", {"watcherId": ids.pop()}).status_code == 200
    again = _rpc(client, "CreateWatcher", {"path": "/tmp"})
    assert again.status_code == 200, again.text
    ids.append(again.json()["watcherId"])
    for watcher_id in ids:
        assert _rpc(client, "RemoveWatcher", {"watcherId": watcher_id}).status_code == 200
    # what the failed recursive watcher took is given back
    small = _rpc(client, "CreateWatcher", {"path": "/tmp/many/1", "recursive": True})
    assert small.status_code == 200, small.text
    _rpc(client, "RemoveWatcher", {"watcherId": small.json()["watcherId"]})
