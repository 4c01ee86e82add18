"""``POST /sandboxes/{id}/restart`` (a sandlot route): every process ends, the sandbox boots
clean on its own files, running or paused, with the real server and runc; the e2b SDK reads
the result."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from e2b import Sandbox
from e2b.sandbox.sandbox_api import SandboxState

from tests import conftest
from tests._support.server import Server
from tests.api import counter

pytestmark = pytest.mark.usefixtures("e2b_env")

@pytest.mark.parametrize(
    "paused",
    [False, pytest.param(True, marks=conftest.needs_criu)],
    ids=["running", "paused"],
)
def test_restart_ends_processes_and_keeps_files(server: Server, cleanup: list[str], paused: bool) -> None:
    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    counter.start_counter(sbx)
    counter.count(sbx)
    sbx.files.write("/home/user/kept.txt", "kept")
    if paused:
        assert sbx.pause() is True
    with server.client() as client:
        answer = client.post(f"/sandboxes/{sbx.sandbox_id}/restart", json={"timeout": 200})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["sandboxID"] == sbx.sandbox_id and body["envdAccessToken"] == sbx._envd_access_token
        detail = client.get(f"/sandboxes/{sbx.sandbox_id}").json()
    assert detail["state"] == "running" and detail["boot"] == "clean"
    info = sbx.get_info()
    assert info.state is SandboxState.RUNNING
    assert abs((info.end_at - datetime.now(UTC)).total_seconds() - 200) < 5
    assert sbx.commands.list() == [], "every process ended"
    out = sbx.commands.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ || true")
    assert out.stdout == "000", "the counter is gone"
    assert sbx.files.read("/home/user/kept.txt") == "kept"
    assert list((server.data_dir / "snapshots").glob(f"{sbx.sandbox_id}/*")) == [], (
        "a paused sandbox's checkpoint is spent"
    )
    # It works as any running sandbox does, and a restart without a body takes the default.
    counter.start_counter(sbx)
    assert counter.count(sbx) >= 0
    with server.client() as client:
        assert client.post(f"/sandboxes/{sbx.sandbox_id}/restart").status_code == 200
    info = sbx.get_info()
    assert abs((info.end_at - datetime.now(UTC)).total_seconds() - 300) < 5, "the server's default"


def test_restart_bad_inputs(server: Server, cleanup: list[str], other_key: str) -> None:
    with server.client() as client:
        missing = client.post("/sandboxes/nosuchsandbox/restart", json={})
        assert (missing.status_code, missing.json()["code"]) == (404, 404)
        sid = client.post("/v2/sandboxes", json={"timeout": 60}).json()["sandboxID"]
        cleanup.append(sid)
        for body in ({"timeout": -1}, {"timeout": "later"}, {"timeout": 2**40}):
            answer = client.post(f"/sandboxes/{sid}/restart", json=body)
            assert answer.status_code == 400 and answer.json()["code"] == 400, answer.text
        with server.client(other_key) as stranger:
            assert stranger.post(f"/sandboxes/{sid}/restart", json={}).status_code == 404
        assert client.get(f"/sandboxes/{sid}").json()["boot"] == "clean"
