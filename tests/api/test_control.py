"""The control plane over plain HTTP: error shapes, the v1 routes, health, restart."""

from __future__ import annotations

import contextlib
import json
import os
import time

import httpx
import pytest

from tests import conftest
from tests._support.server import Server


def _is_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"code", "message"} and "detail" not in body, body
    assert (
        body["code"] == status and isinstance(body["message"], str) and body["message"]
    )


def test_health_needs_no_key(server: Server) -> None:
    response = httpx.get(f"{server.url}/health")
    assert response.status_code == 200


def test_missing_or_bad_key_is_401(server: Server) -> None:
    _is_error(httpx.get(f"{server.url}/v2/sandboxes"), 401)
    with server.client("e2b_" + "2" * 40) as client:
        _is_error(client.get("/sandboxes/whatever"), 401)
        _is_error(client.post("/v2/sandboxes", json={}), 401)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (json.dumps({"templateID": 5}).encode(), 400),
        (json.dumps({"timeout": -1}).encode(), 400),
        (json.dumps({"timeout": "soon"}).encode(), 400),
        (json.dumps({"timeout": 2**40}).encode(), 400),
        (json.dumps({"metadata": {"a": 1}}).encode(), 400),
        (json.dumps({"envVars": {"1BAD": "x"}}).encode(), 400),
        (json.dumps({"envVars": {"A": "x\u0000y"}}).encode(), 400),
        (json.dumps({"templateID": "../../etc"}).encode(), 400),
        (json.dumps({"templateID": "no-such-template"}).encode(), 404),
        (json.dumps({"network": {"allowOut": ["example.com"]}}).encode(), 400),
        (json.dumps({"memoryMB": 1}).encode(), 400),
        (b"x" * (2 << 20), 413),
    ],
)
def test_bad_create_bodies_are_4xx_json(
    server: Server, body: bytes, status: int
) -> None:
    with server.client() as client:
        for path in ("/sandboxes", "/v2/sandboxes"):
            _is_error(
                client.post(
                    path, content=body, headers={"content-type": "application/json"}
                ),
                status,
            )


def test_bad_requests_elsewhere(server: Server, cleanup: list[str]) -> None:
    with server.client() as client:
        sid = client.post("/v2/sandboxes", json={"timeout": 60}).json()["sandboxID"]
        cleanup.append(sid)
        _is_error(client.post(f"/sandboxes/{sid}/timeout", json={}), 400)
        _is_error(client.post(f"/sandboxes/{sid}/timeout", content=b"nope"), 400)
        _is_error(client.get("/v2/sandboxes", params={"limit": 0}), 400)
        _is_error(client.get("/v2/sandboxes", params={"state": "exploded"}), 400)
        _is_error(client.get("/v2/sandboxes", params={"order": "sideways"}), 400)
        _is_error(client.get("/v2/sandboxes", params={"nextToken": "garbage!"}), 400)
        _is_error(
            client.get("/v2/sandboxes", params={"startedAfter": "yesterday"}), 400
        )
        _is_error(client.get("/no/such/route"), 404)
        _is_error(client.put("/sandboxes"), 405)
        _is_error(client.get("/sandboxes/nosuchsandbox"), 404)
        _is_error(client.delete("/sandboxes/nosuchsandbox"), 404)
        _is_error(client.post(f"/sandboxes/{sid}/pause", json={"memory": False}), 400)
        _is_error(client.post(f"/sandboxes/{sid}/fork", json={"count": 0}), 400)
        _is_error(client.post(f"/sandboxes/{sid}/resume", json={}), 409)
        _is_error(client.post("/sandboxes/nosuchsandbox/pause", json={}), 404)


def test_v1_routes(server: Server, cleanup: list[str]) -> None:
    """The routes e2b 2.45 uses (POST /sandboxes, /connect) and the v1 list, directly."""
    with server.client() as client:
        created = client.post(
            "/sandboxes",
            json={"templateID": "base", "timeout": 120, "secure": False, "allow_internet_access": False,
                  "metadata": {"v": "1"}, "envVars": {}},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        cleanup.append(body["sandboxID"])
        assert "envdAccessToken" not in body, "secure: false means no token"
        assert body["envdVersion"] == "0.6.4" and body["domain"] and body["clientID"]
        listed = client.get("/sandboxes", params={"metadata": "v=1"})
        assert [s["sandboxID"] for s in listed.json()] == [body["sandboxID"]]
        connected = client.post(
            f"/sandboxes/{body['sandboxID']}/connect", json={"timeout": 10}
        )
        assert (
            connected.status_code == 200
            and connected.json()["sandboxID"] == body["sandboxID"]
        )
        detail = client.get(f"/sandboxes/{body['sandboxID']}").json()
        assert detail["allowInternetAccess"] is False and detail["lifecycle"] == {
            "autoResume": False,
            "onTimeout": "kill",
        }
        assert client.delete(f"/sandboxes/{body['sandboxID']}").status_code == 204


def test_restart_keeps_sandboxes(server: Server, cleanup: list[str]) -> None:
    """A restart adopts running sandboxes; their end times survive it."""
    with server.client() as client:
        sid = client.post("/v2/sandboxes", json={"timeout": 300}).json()["sandboxID"]
        short = client.post("/v2/sandboxes", json={"timeout": 1}).json()["sandboxID"]
        cleanup.extend([sid, short])
        before = client.get(f"/sandboxes/{sid}").json()
    assert server.stop() == 0
    time.sleep(1.5)  # the short one's end passes while the server is down
    server.start()
    with server.client() as client:
        assert client.get(f"/sandboxes/{sid}").json()["endAt"] == before["endAt"]
        for _ in range(30):
            if client.get(f"/sandboxes/{short}").status_code == 404:
                break
            time.sleep(0.1)
        _is_error(client.get(f"/sandboxes/{short}"), 404)
        metrics = client.get(f"/sandboxes/{sid}/metrics")
        assert metrics.status_code == 200 and metrics.json()[0]["memTotal"] > 0
        assert client.delete(f"/sandboxes/{sid}").status_code == 204
    # The adopted sandboxes' inits were handed to this process (the session's subreaper) when
    # the first server exited, so their zombies are ours to reap: the session driver's orphan
    # reaper would, but its event loop does not run during a sync test.
    # Wait for them to have died too, not only for the zombies of the moment: the short one's
    # 404 comes as soon as its end begins, before its init is killed.
    for _ in range(100):
        inits = [
            int(p.split()[0]) for p in conftest._descendants() if p.endswith(" init")
        ]
        for pid in inits:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaps it once it is a zombie
        if not inits:
            break
        time.sleep(0.1)


def test_sandbox_plane_gone_sandbox_is_502(server: Server) -> None:
    response = httpx.get(
        f"{server.url}/health",
        headers={"E2b-Sandbox-Id": "nosuchsandbox", "E2b-Sandbox-Port": "49983"},
    )
    assert response.status_code == 502
    assert response.json() == {"code": 502, "message": "The sandbox was not found"}
