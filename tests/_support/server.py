"""A real `sandlot serve` for tests and benchmarks: a subprocess on a free loopback port, with
its own data directory, runc instance and subnet, and a real SQLite store.

A subprocess, not a thread: the runc driver makes its process the subreaper of every sandbox,
and the session's own driver (tests/conftest.py) already does that in the test process.
`serving` is the whole life of one: started, healthy, then at the end every team's sandboxes
killed through the API, SIGTERM (it must exit 0), and the leak census of its instance, which
must find nothing. The api, security, sdk and cli tests and bench/ all start servers with it.
"""

from __future__ import annotations

import asyncio
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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from sandlot.config import RuntimeSettings, Settings
from sandlot.runtime import _utils, cgroups
from sandlot.runtime.drivers.runc import RuncDriver
from sandlot.store import db, keys
from tests._support.census import EMPTY, HELPERS, Census, census, descendants

if TYPE_CHECKING:
    from sandlot.sdk._core.config import ConnectionConfig

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: the server runs its code, whatever is installed."""

HEALTHY_WITHIN = 60.0
"""Seconds a starting server has to answer ``GET /health``."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A directory of sandbox data under /var/tmp, mode 0711: not under pytest's tmp dir, which
    is 0700, since root inside a sandbox (an unprivileged uid on the host) must pass through.
    Removed afterwards, unless the block raised: a failed run's server log stays in it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def environment(
    instance: str,
    subnet: str,
    settings: Mapping[str, str] | None = None,
    *,
    drop: tuple[str, ...] = ("E2B_", "SANDLOT_API_"),
) -> dict[str, str]:
    """This process's environment for a server of runc instance ``instance`` on ``subnet``,
    without the variables that start with ``drop`` (the clients' settings), with no internet
    for sandboxes and with ``settings`` (``SANDLOT_*`` variables) on top."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(drop)}
    path = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    return env | {
        "PYTHONPATH": os.pathsep.join(path),
        "SANDLOT_INSTANCE": instance,
        "SANDLOT_SUBNET": subnet,
        "SANDLOT_INTERNET_DEFAULT": "false",
        **(settings or {}),
    }


@dataclasses.dataclass
class Server:
    """One `sandlot serve` on ``data_dir``; `start` runs it (again, after a `stop` or `kill`,
    on the same directory and port), ``key`` is its first team's key once started."""

    data_dir: Path
    env: dict[str, str]
    verbose: bool = True
    """``sandlot -v serve``: a debug line per host command in the log, at some cost."""
    port: int = dataclasses.field(default_factory=free_port)
    key: str = ""
    process: subprocess.Popen[bytes] | None = None
    extra_keys: list[str] = dataclasses.field(default_factory=list)
    """Keys of other teams (`new_team_key`), whose sandboxes are killed at the end too."""
    exited: bool = False
    """Whether it ever exited: sandboxes outlive a server (a SIGKILL, or a stop before a start
    again), so their processes were then handed to this one, a subreaper once a runc driver ran
    in it."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    @property
    def settings(self) -> RuntimeSettings:
        """The runtime settings the server runs with, for a census or a sweep of its instance."""
        return Settings.from_env(environ=self.env, data_dir=self.data_dir).runtime

    @property
    def config(self) -> ConnectionConfig:
        """The sandlot SDK pointed at the server."""
        from sandlot.sdk._core.config import ConnectionConfig

        return ConnectionConfig(api_url=self.url, api_key=self.key)

    @property
    def database(self) -> db.Database:
        return db.Database(db.sqlite_url(self.data_dir))

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "sandlot"), *(["-v"] if self.verbose else []), "serve",
                   "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        with open(self.log, "ab") as log:  # the child keeps a descriptor of its own
            self.process = subprocess.Popen(
                command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        HELPERS.add(self.process.pid)  # another census must not count it as a leak
        deadline = time.monotonic() + HEALTHY_WITHIN
        while True:
            if self.process.poll() is not None:
                self.wait(0)
                raise RuntimeError(f"sandlot serve exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandlot serve did not become healthy in {HEALTHY_WITHIN:.0f} s")
            time.sleep(0.1)
        self.key = (self.data_dir / "api-key").read_text().strip()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit (`subprocess.TimeoutExpired` if it does not in time)."""
        assert self.process is not None
        code = self.process.wait(timeout)
        self.exited = True
        HELPERS.discard(self.process.pid)
        self.process = None
        return code

    def stop(self, grace: float = 30) -> int | None:
        """SIGTERM; the exit code, or None when it did not exit within ``grace`` s and was killed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> int:
        """SIGKILL, as a crash would: the sandboxes live on, handed to this process."""
        assert self.process is not None
        self.process.kill()
        return self.wait(30)

    def new_team_key(self, name: str) -> str:
        """A key of a new team, straight from the store."""
        database = self.database
        try:
            key = keys.create_key(database, keys.create_team(database, name))
        finally:
            database.close()
        self.extra_keys.append(key)
        return key

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
def serving(
    data_dir: Path,
    instance: str,
    subnet: str,
    settings: Mapping[str, str] | None = None,
    *,
    drop: tuple[str, ...] = ("E2B_", "SANDLOT_API_"),
    verbose: bool = True,
    strict: bool = True,
) -> Iterator[Server]:
    """A started server of its own (see `environment` for the arguments). At the end (started
    again if it was left stopped) every team's sandboxes are killed, it gets SIGTERM and must
    exit 0, and the census of its instance must find nothing it did not find before it started:
    `AssertionError` otherwise, after what was left has been swept away. Not ``strict`` (a
    benchmark, whose figures are worth printing all the same), what went wrong goes to stderr."""
    data_dir.mkdir(mode=0o711, exist_ok=True)
    server = Server(data_dir, environment(instance, subnet, settings, drop=drop), verbose=verbose)
    before = census(RuncDriver(server.settings))
    server.start()
    try:
        yield server
    finally:
        restarted = server.exited
        code = _shut_down(server)
        if restarted:
            _reap_orphans(before)
        leaks = leaks_of(server, before)
        if leaks:
            asyncio.run(sweep(server.settings))
        wrong = []
        if code != 0:
            exited = "nothing: it did not exit within 30 s of SIGTERM and was killed" if code is None else code
            wrong.append(f"the server exited {exited}: {server.log_tail()}")
        if leaks:
            problems = [line for line in server.log.read_text().splitlines() if "ERROR" in line or "failed" in line]
            wrong.append(f"the server left host objects behind (swept since): {leaks}\n" + "\n".join(problems[-40:]))
        if wrong and strict:
            raise AssertionError("\n".join(wrong))
        for problem in wrong:
            print(f"warning: {problem}", file=sys.stderr, flush=True)


def _shut_down(server: Server) -> int | None:
    if server.process is None:
        server.start()  # to end the sandboxes a test or a chaos round left it with
    try:
        for key in [server.key, *server.extra_keys]:
            server.kill_all(key)
    finally:
        code = server.stop()
    return code


def leaks_of(server: Server, before: Census = EMPTY) -> dict[str, list[str]]:
    """What the census of the server's instance finds now and did not ``before``; network
    namespaces of this test run's other drivers are theirs to count."""
    settings = server.settings
    leaks = census(RuncDriver(settings)).leaks_since(before)
    leaks["netns"] = [name for name in leaks.get("netns", []) if settings.instance in name]
    return {kind: found for kind, found in leaks.items() if found}


def _reap_orphans(before: Census, wait: float = 10) -> None:
    """Reap the zombies of the sandbox processes an earlier run of the server handed to this
    process (a subreaper, like systemd for a real server), once a later run has ended them."""
    deadline = time.monotonic() + wait
    while new := descendants() - before.processes:
        if time.monotonic() > deadline:
            return
        _utils.reap_orphans_now(among={int(process.split()[0]) for process in new})
        time.sleep(0.05)


async def sweep(settings: RuntimeSettings) -> None:
    """End whatever a server left of its instance, so the host stays clean: the processes in
    its cgroups first (a hung restore leaves them frozen, and orphaned), then every other piece
    through the driver's own reconcile, then the instance's cgroup parents, once empty."""
    parent = f"/sandlot-{settings.instance}"
    for sid in {c.name for d in cgroups.cgroup_dirs(parent) for c in d.iterdir() if c.is_dir()}:
        await cgroups.kill_all(f"{parent}/{sid}")
    async with RuncDriver(settings) as driver:
        await driver.reconcile(known=())
    name = parent.lstrip("/")
    for directory in [cgroups.ROOT / name, *cgroups.ROOT.glob(f"*/{name}")]:  # runc makes them in every hierarchy
        with contextlib.suppress(OSError):
            directory.rmdir()  # fails, harmlessly, unless empty
