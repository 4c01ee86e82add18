"""A real `sandlot serve` for the api tests: a subprocess on a free loopback port, with its own
runc instance, subnet and data directory, and a real SQLite store.

A subprocess, not a thread: the runc driver makes its process the subreaper of every sandbox,
and the session's other driver (tests/conftest.py) already does that in this process.
At the end every sandbox is killed through the API, the server is stopped with SIGTERM, and
the leak census of tests/conftest.py is taken of the server's driver instance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot.config import Settings
from sandlot.runtime.drivers.runc import RuncDriver
from sandlot.store import db, keys
from tests import conftest, slot
from tests.conftest import EMPTY, census


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Server:
    url: str
    key: str
    data_dir: Path
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sandlot = Path(sys.executable).parent / "sandlot"
        with open(self.data_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(sandlot), "-v", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.data_dir)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"sandlot serve exited: {(self.data_dir / 'server.log').read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("sandlot serve did not become healthy in 60 s")
        self.key = (self.data_dir / "api-key").read_text().strip()
        conftest.HELPERS.add(self.process.pid)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        conftest.HELPERS.discard(self.process.pid)
        self.process = None
        return code

    @property
    def database(self) -> db.Database:
        return db.Database(db.sqlite_url(self.data_dir))

    def new_team_key(self, name: str) -> str:
        database = self.database
        try:
            return keys.create_key(database, keys.create_team(database, name))
        finally:
            database.close()

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": key if key is not None else self.key}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def kill_all(self, key: str | None = None) -> None:
        """Kill every sandbox of the key's team, including creates still in flight when called
        (a client that gave up on a create does not stop it): until two looks find none."""
        quiet = 0
        with self.client(key) as client:
            while quiet < 2:
                found = client.get("/v2/sandboxes", params={"limit": 1000}).json()
                for sbx in found:
                    client.delete(f"/sandboxes/{sbx['sandboxID']}")
                quiet = 0 if found else quiet + 1
                time.sleep(0.5)


@contextlib.contextmanager
def serving(data_dir: Path, instance: str, subnet: str) -> Iterator[Server]:
    """A started server of its own (data dir, runc instance name, subnet); at the end every
    team's sandboxes are killed, the server stopped, and its host objects counted."""
    data_dir.mkdir(mode=0o711)
    env = {
        **os.environ,
        "SANDLOT_INSTANCE": instance,
        "SANDLOT_SUBNET": subnet,
        "SANDLOT_SPARES": "1",
        "SANDLOT_INTERNET_DEFAULT": "false",
    }
    for name in list(env):
        if name.startswith("E2B_"):
            del env[name]
    port = _free_port()
    srv = Server(
        url=f"http://127.0.0.1:{port}", key="", data_dir=data_dir, env=env, port=port
    )
    srv.start()
    teams: list[str] = []
    srv.extra_keys = teams  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        if srv.process is not None:
            for key in [srv.key, *teams]:
                srv.kill_all(key)
            assert srv.stop() == 0, (data_dir / "server.log").read_text()[-3000:]
    settings = Settings.from_env(environ=env, data_dir=data_dir).runtime
    leaks = census(RuncDriver(settings)).leaks_since(EMPTY)
    if leaks:
        log = (data_dir / "server.log").read_text()
        problems = [
            line for line in log.splitlines() if "ERROR" in line or "failed" in line
        ][-40:]
        raise AssertionError(
            f"the server left host objects behind: {leaks}\n" + "\n".join(problems)
        )


@pytest.fixture(scope="session")
def server(data_root: Path, driver: RuncDriver) -> Iterator[Server]:
    """The server. It asks for the session's `driver` only so that the driver's end-of-session
    census runs after the server (a child process of this one) has stopped."""
    with serving(data_root / "server", f"t{os.getpid()}s", slot.subnet(150)) as srv:
        yield srv


@pytest.fixture(scope="session", autouse=True)
def _server_before_census(server: Server) -> None:
    """Start the server before any test's leak census (tests/conftest.py `no_leaks`) is taken:
    the server process lives for the whole session and is not a test's leak."""


@pytest.fixture(scope="session")
def other_key(server: Server) -> str:
    """A key of a second team."""
    key = server.new_team_key("other")
    server.extra_keys.append(key)  # type: ignore[attr-defined]
    return key


@pytest.fixture
def e2b_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The e2b SDK pointed at the server (docs/e2b-wire.md §1)."""
    monkeypatch.setenv("E2B_API_URL", server.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
    monkeypatch.setenv("E2B_API_KEY", server.key)
    return server


@pytest.fixture
def cleanup(server: Server) -> Iterator[list[str]]:
    """Ids of sandboxes a test makes; those still alive are killed after it."""
    made: list[str] = []
    yield made
    with server.client() as client:
        for sid in made:
            client.delete(f"/sandboxes/{sid}")
