"""Issue 11, item 1: one tenant's sandbox must not hang the server.

Root inside a sandbox replaces ``/etc/passwd`` (or ``/etc/group``) with a FIFO, then its client
sends a dozen file calls. Before, each of them took a thread of asyncio's default executor
and waited forever in ``open()``, and with those threads went the API-key checks and the
store: another team's calls timed out, ``GET /sandboxes`` never answered, and SIGTERM left a
process that never exited. Here the other team, the control plane and ``GET /health`` answer
in well under a second meanwhile, the FIFO calls get a clear 4xx, and SIGTERM ends the
server in less than 10 s. All through the real server and the real e2b SDK.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2b import InvalidArgumentException, Sandbox

from sandlot.runtime import _utils
from sandlot.runtime.drivers.runc import RuncDriver
from tests import conftest, slot
from tests._support.server import Server, serving

pytestmark = pytest.mark.usefixtures("e2b_env")

CALLS = 12
QUICK = 1.0
"""Seconds within which the server's other users must get their answers."""


def _poison(sbx: Sandbox, name: str = "passwd") -> None:
    """As root inside the sandbox: ``/etc/<name>`` becomes a FIFO nobody writes to."""
    sbx.commands.run(f"rm /etc/{name} && mkfifo -m 644 /etc/{name}", user="root")


def _in_threads(calls: list[Callable[[], Any]]) -> tuple[list[threading.Thread], list[Any]]:
    """Start each call in a daemon thread; the list gets each one's result or exception."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - recorded for the asserts
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return threads, results


def _fifo_calls(sbx: Sandbox) -> list[Callable[[], Any]]:
    calls: list[Callable[[], Any]] = []
    for i in range(CALLS):
        if i % 2:
            calls.append(lambda: sbx.files.read("/etc/passwd", user="root", request_timeout=30))
        else:
            calls.append(lambda i=i: sbx.files.write(f"/home/user/f{i}", "x", request_timeout=30))
    return calls


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def test_a_fifo_passwd_hangs_nobody_else(server: Server, other_key: str, cleanup: list[str]) -> None:
    mine = Sandbox.create(timeout=120)
    cleanup.append(mine.sandbox_id)
    theirs = Sandbox.create(timeout=120, api_key=other_key)
    cleanup.append(theirs.sandbox_id)
    _poison(mine)

    threads, results = _in_threads(_fifo_calls(mine))
    time.sleep(0.5)  # let them all reach the server
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(3):
            _, took = _timed(lambda: theirs.files.write("/home/user/b.txt", "hello", request_timeout=10))
            assert took < QUICK, f"another team's files.write took {took:.2f} s"
            text, took = _timed(lambda: theirs.files.read("/home/user/b.txt", request_timeout=10))
            assert text == "hello" and took < QUICK, f"another team's files.read took {took:.2f} s"
            health, took = _timed(lambda: client.get("/health"))
            assert health.status_code == 200 and took < QUICK, f"GET /health took {took:.2f} s"
            listed, took = _timed(lambda: client.get("/sandboxes", headers={"X-API-Key": server.key}))
            assert listed.status_code == 200 and took < QUICK, f"GET /sandboxes took {took:.2f} s"
            assert mine.sandbox_id in [s["sandboxID"] for s in listed.json()]

    for thread in threads:
        thread.join(20)
    assert not any(t.is_alive() for t in threads), "the FIFO sandbox's own calls never got an answer"
    for result in results:
        assert isinstance(result, InvalidArgumentException), result
        assert "does not exist in the sandbox" in str(result)


def test_a_fifo_group_does_not_stall_watch_events(server: Server, cleanup: list[str]) -> None:
    """Watch events with entries name their owner and group from the sandbox's /etc/group:
    that read used to happen on the event loop, which a FIFO there stopped for everyone."""
    sbx = Sandbox.create(timeout=120)
    cleanup.append(sbx.sandbox_id)
    sbx.files.make_dir("/home/user/w")
    handle = sbx.files.watch_dir("/home/user/w")  # polling; the SDK asks for no entry
    _poison(sbx, "group")
    headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token or ""}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        payload = json.dumps({"path": "/home/user/w", "includeEntry": True}).encode()
        body = struct.pack(">BI", 0, len(payload)) + payload
        with client.stream(
            "POST",
            "/filesystem.Filesystem/WatchDir",
            content=body,
            headers={**headers, "content-type": "application/connect+json"},
        ) as stream:
            assert stream.status_code == 200
            sbx.files.write("/home/user/w/a", "1")  # not a command: starting one reads /etc/group
            sbx.files.write("/home/user/w/b", "2")
            time.sleep(0.5)  # the events are being turned into messages now
            for _ in range(3):
                health, took = _timed(lambda: client.get("/health"))
                assert health.status_code == 200 and took < QUICK, f"GET /health took {took:.2f} s"
            events = _events(stream.iter_raw(), want=4)
    assert {e["name"] for e in events} == {"a", "b"}
    assert all(e["entry"]["owner"] == "user" and e["entry"]["group"] for e in events), events
    assert {e.name for e in handle.get_new_events()} >= {"a", "b"}
    handle.stop()


def _events(chunks: Iterator[bytes], want: int) -> list[dict[str, Any]]:
    """The first ``want`` filesystem events of a WatchDir stream."""
    data, out = b"", []
    for chunk in chunks:
        data += chunk
        while len(data) >= 5:
            _, length = struct.unpack(">BI", data[:5])
            if len(data) < 5 + length:
                break
            message = json.loads(data[5 : 5 + length])
            data = data[5 + length :]
            if "filesystem" in message:
                out.append(message["filesystem"])
            if len(out) >= want:
                return out
    return out


def test_sigterm_ends_the_server_while_a_sandbox_misbehaves(
    data_root: Path, driver: RuncDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server of its own, since this one is stopped in the middle."""
    with serving(data_root / "sigterm-server", f"t{os.getpid()}y", slot.subnet(190)) as srv:
        monkeypatch.setenv("E2B_API_URL", srv.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", srv.url)
        monkeypatch.setenv("E2B_API_KEY", srv.key)
        sbx = Sandbox.create(timeout=120)
        sbx.files.make_dir("/tmp/w")
        watching = threading.Event()
        threading.Thread(target=_hold_watch, args=(srv, sbx, watching), daemon=True).start()
        assert watching.wait(10), "the WatchDir stream did not start"
        _poison(sbx)
        threads, _ = _in_threads(_fifo_calls(sbx))
        time.sleep(0.5)
        started = time.monotonic()
        code = srv.stop(grace=15)
        took = time.monotonic() - started
        srv.start()  # again: it adopts the sandbox, which is killed for the census at the end
        Sandbox.kill(sbx.sandbox_id)
        _reap_orphaned_inits()
        for thread in threads:
            thread.join(5)
        assert took < 10, f"the server took {took:.1f} s to stop after SIGTERM"
        assert code == 0, (srv.data_dir / "server.log").read_text()[-3000:]


def _reap_orphaned_inits() -> None:
    """The stopped server's sandbox inits were handed to this process (the session's driver
    made it a subreaper); once the second server has killed them, reap their zombies."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _utils.reap_orphans_now("init")
        if not [p for p in conftest._descendants() if p.endswith(" init")]:
            return
        time.sleep(0.05)


def _hold_watch(srv: Server, sbx: Sandbox, watching: threading.Event) -> None:
    """Hold a WatchDir stream open: a request that never ends by itself."""
    headers = {
        "E2b-Sandbox-Id": sbx.sandbox_id,
        "X-Access-Token": sbx._envd_access_token or "",
        "content-type": "application/connect+json",
    }
    payload = json.dumps({"path": "/tmp/w"}).encode()
    body = struct.pack(">BI", 0, len(payload)) + payload
    try:
        url = f"{srv.url}/filesystem.Filesystem/WatchDir"
        with httpx.stream("POST", url, content=body, headers=headers, timeout=60) as r:
            for _ in r.iter_raw():
                watching.set()
    except httpx.HTTPError:
        pass
