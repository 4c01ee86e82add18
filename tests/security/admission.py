"""A `sandlot serve` of its own for each admission test, with the floor, ratio, quota,
retention or proxy caps the test needs (issue 11, item 5).

Limits are set from the test's figures rather than reached for real: a floor just under the
free space the data filesystem has now, a memory ratio that gives out 768 MiB, a quota of a few
hundred MiB. Each server has its own data directory under the session's, runc instance
``t<pid>d<n>`` and the lower half of ``10.<120 + slot>.0.0/16``; one runs at a time. At the end
every sandbox and snapshot is removed through the API, the server gets SIGTERM, and the leak
census of tests/conftest.py must find nothing of its instance.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2b import Sandbox

from tests import slot
from tests._support.server import Server, serving

MiB = 1 << 20
_instances = itertools.count()


def free_mb(path: Path) -> int:
    """MiB the filesystem of ``path`` has free, as the server counts it."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // MiB


@contextlib.contextmanager
def serve(data_root: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> Iterator[Server]:
    """A started server whose ``SANDLOT_<NAME>`` are ``settings``; the e2b SDK points at it.
    Snapshots of every team (`Server.new_team_key`) are deleted at the end, then `serving`
    ends the rest."""
    n = next(_instances)
    pools = {
        "SANDLOT_SPARES": "0",
        "SANDLOT_POOL_MAX": "0",
        "SANDLOT_EXECUTE_POOL_MIN": "0",
        "SANDLOT_EXECUTE_POOL_MAX": "1",
    }
    asked = {f"SANDLOT_{name.upper()}": str(value) for name, value in settings.items()}
    with serving(data_root / f"admission-{n}", f"t{os.getpid()}d{n}", slot.subnet(120), pools | asked) as server:
        monkeypatch.setenv("E2B_API_URL", server.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
        monkeypatch.setenv("E2B_API_KEY", server.key)
        try:
            yield server
        finally:
            for key in [server.key, *server.extra_keys]:
                with server.client(key) as client:
                    for snapshot in client.get("/snapshots").json():
                        client.delete(f"/templates/{snapshot['snapshotID']}")


def create(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post("/v2/sandboxes", json={"timeout": 120, **body})


def created(client: httpx.Client, **body: object) -> str:
    answer = create(client, **body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["sandboxID"])


def hold_memory(sandbox_id: str, mb: int, api_key: str | None = None) -> None:
    """Make a process of the sandbox hold ``mb`` MiB of memory it has written (so that a
    checkpoint of it takes about that much disk), and wait until it does."""
    sbx = Sandbox.connect(sandbox_id, api_key=api_key)
    script = f"x = b'\\x01' * ({mb} << 20)\nopen('/tmp/holding', 'w').close()\nimport time\ntime.sleep(10**6)\n"
    sbx.files.write("/tmp/hold.py", script)
    sbx.commands.run("python3 /tmp/hold.py", background=True).disconnect()
    sbx.commands.run("while [ ! -e /tmp/holding ]; do sleep 0.05; done", timeout=60)


def error(answer: httpx.Response, status: int) -> str:
    """The message of an error answer of ``status`` (in the control plane's shape)."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == status, body
    return str(body["message"])
