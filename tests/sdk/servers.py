"""A real sandlot server for the SDK and CLI tests, and sandboxes on it.

A plugin of the root conftest (``pytest_plugins``), not a conftest of its own: tests/sdk and
tests/cli share one ``sdk_server`` per session. Importing these fixtures into a second
conftest made a second server with the same runc instance and subnet, whose veths and
nftables table collided with the first's.

The server is ``sandlot.api.app.create_app`` under uvicorn (see ``serve.py``), with a real runc
driver of its own: data under /var/tmp (mode 0711, so a sandbox's root can pass through), runc
instance ``t<pid>k`` and the lower half of ``10.<60 + slot>.0.0/16``, so it never meets another
test run's sandboxes. ``small_server`` (instance ``t<pid>m``, the upper half) has an
``/execute`` queue small enough to fill from a test. The API key comes from its store. At the end every sandbox is killed through
the API, the server gets SIGTERM, and the leak census of tests/conftest.py must find nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot.config import Settings
from sandlot.sdk._core.config import ConnectionConfig
from tests import slot
from tests.conftest import HELPERS

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class SdkServer:
    url: str
    key: str
    data_dir: Path
    env: dict[str, str]

    @property
    def config(self) -> ConnectionConfig:
        return ConnectionConfig(api_url=self.url, api_key=self.key)

    def kill_all(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=60) as client:
            for sbx in client.get("/v2/sandboxes", params={"limit": 1000}).json():
                client.delete(f"/sandboxes/{sbx['sandboxID']}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serve(instance: str, subnet: str, extra_env: dict[str, str] | None = None) -> Iterator[SdkServer]:
    from sandlot.store import db, keys  # the server's own modules: only for the fixture
    from tests.conftest import census

    data_dir = Path(tempfile.mkdtemp(prefix="sandlot-sdk-", dir="/var/tmp"))
    data_dir.chmod(0o711)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("E2B_", "SANDLOT_API"))}
    env |= {
        "SANDLOT_INSTANCE": instance,
        "SANDLOT_SUBNET": subnet,
        "SANDLOT_INTERNET_DEFAULT": "false",
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    settings = Settings.from_env(environ=env, server={"data_dir": data_dir}, data_dir=data_dir)
    database = db.Database(settings.database_url)
    try:
        database.upgrade()
        key = keys.create_key(database, keys.default_team(database))
    finally:
        database.close()
    from sandlot.runtime.drivers.runc import RuncDriver

    before = census(RuncDriver(settings.runtime))  # the processes pytest already has are not leaks
    port = _free_port()
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - open for the server's whole life
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sdk.serve", str(data_dir), str(port)],
        env=env, cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    server = SdkServer(url=f"http://127.0.0.1:{port}", key=key, data_dir=data_dir, env=env)
    HELPERS.add(process.pid)  # another server's census must not count this one as its leak
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {(data_dir / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become healthy in 60 s")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            try:
                server.kill_all()
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        HELPERS.discard(process.pid)
        log.close()
    try:
        leaks = census(RuncDriver(settings.runtime)).leaks_since(before)
        # The census lists every network namespace named sandlot*, whoever made it; other test
        # runs on this machine make their own (tests/runtime/test_network.py): keep only ours.
        leaks["netns"] = [n for n in leaks.get("netns", []) if settings.runtime.instance in n]
        leaks = {kind: found for kind, found in leaks.items() if found}
        assert not leaks, f"the server left host objects behind: {leaks}"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sdk_server() -> Iterator[SdkServer]:
    with _serve(f"t{os.getpid()}k", slot.subnet(60)) as server:
        yield server


@pytest.fixture(scope="session")
def small_server() -> Iterator[SdkServer]:
    """A server whose ``/execute`` has one runner sandbox and room for one waiting run: a third
    concurrent run is answered 429 (``Retry-After: 1``), one that waits 3 s for a runner 503."""
    extra = {
        "SANDLOT_POOL_MAX": "0",
        "SANDLOT_EXECUTE_POOL_MIN": "1",
        "SANDLOT_EXECUTE_POOL_MAX": "1",
        "SANDLOT_EXECUTE_QUEUE": "1",
        "SANDLOT_EXECUTE_QUEUE_TIMEOUT": "3",
    }
    with _serve(f"t{os.getpid()}m", slot.subnet(60, 1), extra) as server:
        # The languages' versions are asked at start, in its one runner: wait for them, or the
        # first runs of a test would all start together once they are known.
        httpx.get(f"{server.url}/execute/languages", headers={"X-API-Key": server.key}, timeout=60).raise_for_status()
        yield server


@pytest.fixture
def sdk_env(sdk_server: SdkServer, monkeypatch: pytest.MonkeyPatch) -> SdkServer:
    """``SANDLOT_API_URL``/``SANDLOT_API_KEY`` pointing at the test server (for default constructors)."""
    monkeypatch.setenv("SANDLOT_API_URL", sdk_server.url)
    monkeypatch.setenv("SANDLOT_API_KEY", sdk_server.key)
    return sdk_server
