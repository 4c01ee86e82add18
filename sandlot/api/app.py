"""One ASGI app for both planes on one port.

A small dispatcher in front sends a request to the sandbox plane when it names a sandbox (an
``E2b-Sandbox-Id`` header, or a ``{port}-{id}.{domain}`` host) or uses a sandbox-plane path
(``/process.Process/*``, ``/filesystem.Filesystem/*``, ``/files``), and everything else to the
control plane (FastAPI). ``GET /health`` without sandbox headers is the server's own health.

Lifespan (run by the control plane's app, which the dispatcher forwards lifespan events to):
open the runtime driver, migrate the store, reconcile the runtime with it, start the timers.
On shutdown the timers stop and the driver closes, but **sandboxes keep running**: E2B's
contract is that a sandbox lives until its end time, not until the server restarts. The next
start adopts them (`SandboxManager.start`) and ends those whose time ran out meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from sandlot._wire import codes
from sandlot.api import auth, control, errors, execute
from sandlot.config import Settings
from sandlot.lifecycle import manager as lifecycle
from sandlot.lifecycle import pools
from sandlot.lifecycle import timers as lifecycle_timers
from sandlot.runner import service as runner_service
from sandlot.runtime import base, drivers, target
from sandlot.store import db

__all__ = ["create_app"]

logger = logging.getLogger("sandlot.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HOST = re.compile(rb"^(\d{1,5})-([a-z0-9][a-z0-9-]*)\.")
_SANDBOX_PATHS = ("/process.Process/", "/filesystem.Filesystem/")
MAX_CONTROL_BODY = 1 << 20
"""Control-plane bodies are small JSON; anything above this is refused with 413."""


def create_app(
    settings: Settings, *, driver: base.RuntimeDriver | None = None
) -> ASGIApp:
    """The server's ASGI app.

    Args:
        settings: all of sandlot's settings; ``server`` and ``runtime`` are read.
        driver: an open driver to use instead of opening ``settings.server.driver`` (tests);
            the app then neither opens nor closes it.

    Example:
        >>> uvicorn.run(create_app(Settings.from_env()), host="127.0.0.1", port=3000)
    """
    app = FastAPI(
        title="sandlot",
        summary="E2B-compatible control plane",
        version="0.1.0",
        lifespan=_lifespan(settings, driver),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.ready = False
    app.state.domain = settings.server.resolved_domain()
    app.include_router(control.router)
    app.include_router(execute.router)
    errors.install(app)

    async def resolve(
        sandbox_id: str, access_token: str | None
    ) -> target.SandboxTarget:
        manager: lifecycle.SandboxManager | None = getattr(app.state, "manager", None)
        if manager is None:
            raise target.SandboxGone(sandbox_id)
        return await manager.resolve(sandbox_id, access_token)

    async def access_token_of(sandbox_id: str) -> str | None:
        """The key of a sandbox's signed URLs (checked before any token is presented)."""
        manager: lifecycle.SandboxManager | None = getattr(app.state, "manager", None)
        if manager is None:
            raise target.SandboxGone(sandbox_id)
        return manager.access_token(sandbox_id)

    return Dispatcher(
        control=_BodyLimit(app, MAX_CONTROL_BODY),
        sandbox=_sandbox_app(resolve, access_token_of, settings),
    )


def _sandbox_app(
    resolver: target.Resolver, access_token_of: Callable[[str], Awaitable[str | None]], settings: Settings
) -> ASGIApp:
    try:
        from sandlot.api import sandbox
    except (
        ImportError
    ):  # the sandbox plane is not installed (yet): answer for it honestly
        logger.warning(
            "server.sandbox_plane missing: sandlot.api.sandbox cannot be imported"
        )
        return _NoSandboxPlane(resolver)
    return sandbox.create_sandbox_app(resolver, access_token_of=access_token_of, limits=settings.admission)


def _lifespan(
    settings: Settings, given: base.RuntimeDriver | None
) -> Callable[[FastAPI], Any]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        database = await asyncio.to_thread(db.migrated, settings.database_url, settings.state_dir)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(database.close)
            if given is None:
                driver: base.RuntimeDriver = await stack.enter_async_context(
                    drivers.load(settings.server.driver)(settings.runtime)
                )
            else:
                driver = given
            pool = pools.sandbox_pool(driver, settings)
            manager = lifecycle.SandboxManager(driver, database, settings, pool)
            report = await manager.start()
            logger.info(
                "server.start adopted=%d lost=%d removed=%d",
                len(report.kept),
                len(report.missing),
                len(report.removed),
            )
            # Pools start after the reconcile, which removes every sandbox the store does not know.
            if pool is not None:
                pool.start()
                stack.push_async_callback(pool.aclose)
            executor = runner_service.Executor(driver, settings)
            executor.start()
            stack.push_async_callback(executor.aclose)
            timers = lifecycle_timers.Timers(manager)
            timers.start()
            stack.push_async_callback(timers.aclose)
            app.state.database = database
            app.state.keys = auth.KeyCache(database)
            app.state.manager = manager
            app.state.executor = executor
            app.state.ready = True
            try:
                yield
            finally:
                app.state.ready = False
                app.state.manager = None

    return lifespan


class Dispatcher:
    """Sends each request to the sandbox plane or the control plane (module docstring)."""

    def __init__(self, *, control: ASGIApp, sandbox: ASGIApp) -> None:
        self.control = control
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and _names_sandbox(scope):
            await self.sandbox(scope, receive, send)
        else:
            await self.control(scope, receive, send)


def _names_sandbox(scope: Scope) -> bool:
    path: str = scope["path"]
    if path.startswith(_SANDBOX_PATHS) or path == "/files":
        return True
    for name, value in scope["headers"]:
        if name == b"e2b-sandbox-id":
            return True
        if name == b"host" and _HOST.match(value):
            return True
    return False


class _BodyLimit:
    """Refuses control-plane request bodies over ``limit`` bytes with 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (
                not value.isdigit() or int(value) > self.limit
            ):
                await _send_error(send, 413, f"request body over {self.limit} bytes")
                return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await _send_error(send, 413, f"request body over {self.limit} bytes")
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _NoSandboxPlane:
    """Stands in for the sandbox plane when it is not installed: a gone sandbox still gets
    E2B's 502, a wrong token 401, anything else 501."""

    def __init__(self, resolver: target.Resolver) -> None:
        self.resolver = resolver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        sandbox_id = headers.get(b"e2b-sandbox-id", b"").decode(errors="replace")
        if not sandbox_id and (match := _HOST.match(headers.get(b"host", b""))):
            sandbox_id = match.group(2).decode()
        token = headers.get(b"x-access-token")
        try:
            await self.resolver(
                sandbox_id,
                token.decode(errors="replace") if token is not None else None,
            )
        except target.SandboxGone:
            await _send_error(send, codes.GONE.status, codes.GONE_MESSAGE)
            return
        except target.TokenRejected:
            await _send_error(
                send, 401, "invalid or missing access token for this sandbox"
            )
            return
        await _send_error(
            send, 501, "the sandbox plane is not installed in this server"
        )


async def _send_error(send: Send, status: int, message: str) -> None:
    import json

    body = json.dumps(codes.error_body(status, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
