"""`POST /sandboxes` served from the warm pool, through a real `sandlot serve` and the e2b SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2b import Sandbox

from tests._support.server import Server
from tests.internet import CONNECT, PUBLIC, stand_in_internet

pytestmark = pytest.mark.usefixtures("e2b_env")


def _pool(server: Server) -> dict[str, int]:
    with server.client() as client:
        return client.get("/health").json()["pools"]["sandboxes"]  # type: ignore[no-any-return]


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 30
    while _pool(server)["ready"] < 1:
        assert time.monotonic() < deadline, "the pool did not refill"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def fake_internet() -> Iterator[None]:
    with stand_in_internet():
        yield


@pytest.mark.usefixtures("fake_internet")
def test_a_pooled_sandbox_is_the_one_the_create_asked_for(server: Server, cleanup: list[str]) -> None:
    _wait_ready(server)
    asked = time.time()
    sbx = Sandbox.create(timeout=60, envs={"GREETING": "hello"}, metadata={"from": "pool"}, allow_internet_access=True)
    cleanup.append(sbx.sandbox_id)
    made = (server.data_dir / "sandboxes" / sbx.sandbox_id / "bundle" / "config.json").stat().st_mtime
    assert made < asked, "the sandbox was made before the create asked for it: it came from the pool"
    assert sbx.commands.run("echo $GREETING; hostname").stdout == f"hello\n{sbx.sandbox_id}\n"
    assert Sandbox.get_info(sbx.sandbox_id).metadata == {"from": "pool"}
    reached = sbx.commands.run(f"python3 -c '{CONNECT}' {PUBLIC} 80 1.0").stdout
    assert reached == "connected hi\n", "the create's network policy replaced the pool's"
    _wait_ready(server)
    asked = time.time()
    closed = Sandbox.create(timeout=60)
    cleanup.append(closed.sandbox_id)
    assert (server.data_dir / "sandboxes" / closed.sandbox_id / "bundle" / "config.json").stat().st_mtime < asked
    assert closed.commands.run(f"python3 -c '{CONNECT}' {PUBLIC} 80 1.0").stdout.startswith("blocked")
    assert closed.sandbox_id != sbx.sandbox_id


def test_a_create_the_pool_cannot_serve_is_made_as_asked(server: Server, cleanup: list[str]) -> None:
    asked = time.time()
    with server.client() as client:
        made = client.post("/v2/sandboxes", json={"timeout": 60, "memoryMB": 256})
        assert made.status_code == 201, made.text
        sid = made.json()["sandboxID"]
        cleanup.append(sid)
        assert client.get(f"/sandboxes/{sid}").json()["memoryMB"] == 256
        assert (server.data_dir / "sandboxes" / sid / "bundle" / "config.json").stat().st_mtime > asked
        assert client.get(f"/sandboxes/{sid}/metrics").json()[0]["memTotal"] == 256 << 20
