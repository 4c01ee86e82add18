"""A real sandbox plane for tests: a runc driver, sandboxes, a resolver, and the app on uvicorn.

In the test process, not a `sandlot serve`: the tests hand out the sandboxes and access tokens
the plane resolves, without a control plane or store between.

Everything runs on an event loop in a thread of its own, so that tests can drive the server
with blocking clients (httpx, the sync e2b SDK) as well as async ones. The driver has its own
instance name and subnet (``t<pid>p``, ``10.<100+pid%40>.0.0/17``) so that it never meets the
runtime tests' driver or a server on the same host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import os
import secrets
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from sandlot.api import sandbox as sandbox_plane
from sandlot.config import Settings
from sandlot.runtime import errors, models, target
from sandlot.runtime.drivers.runc import RuncDriver
from tests import slot
from tests._support.server import free_port

_T = TypeVar("_T")


@dataclasses.dataclass
class Box:
    sandbox_id: str
    token: str | None
    target: target.SandboxTarget


class Plane:
    """Start with `open`, stop with `close`; `boxes` holds the sandboxes made by `make`."""

    def __init__(self, data_dir: Path) -> None:
        pid = os.getpid()
        base = Settings.from_env().runtime
        self.settings = dataclasses.replace(
            base,
            data_dir=data_dir,
            instance=f"t{pid}p",
            subnet=slot.subnet(100),
            internet_default=False,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sandbox-plane", daemon=True)
        self.boxes: dict[str, Box] = {}
        self.driver: RuncDriver | None = None
        self.server: uvicorn.Server | None = None
        self.port = 0
        self._count = 0

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 120) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> Plane:
        self.thread.start()
        self.run(self._open())
        return self

    async def _open(self) -> None:
        self.driver = await RuncDriver(self.settings).__aenter__()
        app = sandbox_plane.create_sandbox_app(self.resolve, access_token_of=self.access_token_of)
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._serving = asyncio.ensure_future(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)

    async def resolve(self, sandbox_id: str, access_token: str | None) -> target.SandboxTarget:
        box = self.boxes.get(sandbox_id)
        if box is None:
            raise target.SandboxGone(sandbox_id)
        if box.token is not None and (
            access_token is None or not hmac.compare_digest(access_token.encode(), box.token.encode())
        ):
            raise target.TokenRejected(sandbox_id)
        return box.target

    async def access_token_of(self, sandbox_id: str) -> str | None:
        box = self.boxes.get(sandbox_id)
        if box is None:
            raise target.SandboxGone(sandbox_id)
        return box.token

    def make(self, *, secure: bool = True) -> Box:
        return self.run(self._make(secure))

    async def _make(self, secure: bool) -> Box:
        assert self.driver is not None
        self._count += 1
        sid = f"pl-{os.getpid()}-{self._count}"
        info = await self.driver.create(
            spec=models.SandboxSpec(sandbox_id=sid, network=models.NetworkPolicy(internet=False))
        )
        fs = await self.driver.filesystem(sandbox_id=sid)
        box = Box(
            sid,
            secrets.token_hex(16) if secure else None,
            target.SandboxTarget(
                sandbox_id=sid,
                driver=self.driver,
                address=info.address,
                filesystem=fs,
                env={"SANDBOX_ENV": "from-create"},
            ),
        )
        self.boxes[sid] = box
        return box

    def destroy(self, sandbox_id: str) -> None:
        self.boxes.pop(sandbox_id)
        self.run(self._destroy(sandbox_id))

    async def _destroy(self, sandbox_id: str) -> None:
        assert self.driver is not None
        try:
            await self.driver.destroy(sandbox_id=sandbox_id)
        except errors.RuntimeDriverError:
            # The driver kills init and then runs `runc delete` without waiting: while the
            # kernel is still tearing the pid namespace down, runc sees "running". Destroy is
            # idempotent and finishes the job on a second pass.
            await asyncio.sleep(0.5)
            await self.driver.destroy(sandbox_id=sandbox_id)

    def close(self) -> None:
        for sid in list(self.boxes):
            self.destroy(sid)
        self.run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await self._serving
        if self.driver is not None:
            await self.driver.reconcile(known=())
            await self.driver.__aexit__(None, None, None)
