"""The sandbox plane: envd's interface for one sandbox, served by the daemon itself.

A request names its sandbox by the ``E2b-Sandbox-Id`` / ``E2b-Sandbox-Port`` headers, or by a
``{port}-{id}.{domain}`` host (docs/e2b-wire.md section 3). The resolver (the lifecycle layer)
turns that into a `SandboxTarget` after checking ``X-Access-Token``; a gone sandbox is E2B's
502 ``{"code":502,"message":"The sandbox was not found"}``, a wrong token 401.

The envd port (49983) is served here: ``/process.Process/*`` and ``/filesystem.Filesystem/*``
over Connect (`sandlot.api.connect`), ``/files`` and ``/health``. Any other port is proxied to
that port at the sandbox's address, streaming both ways; a refused connection is 502 "The
sandbox is running but port is not open", the text E2B's SDK keys on.

The proxy holds each sandbox to `AdmissionSettings.proxy_connections` requests at once (one
more is 429 with ``Retry-After``), so that one sandbox's slow port, or one client opening
requests it never finishes, cannot take every connection the server has. A port that stays
silent ``proxy_read_timeout`` seconds is given up on (504 before its answer starts, the answer
cut after), and so is a client that sends no byte of its body, or reads none of the answer, for
``proxy_idle_timeout`` seconds.

Signed ``/files`` URLs carry no access token; they are checked (`files.check_signature`)
against the sandbox's token, which the app learns from ``access_token_of`` (the resolver cannot
hand it out before the request is authenticated). Without it, signed URLs are refused with 401.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandlot._wire import codes
from sandlot.agent import files, filesystem, process, rpc
from sandlot.api import connect
from sandlot.config import AdmissionSettings
from sandlot.runtime import oci, target

__all__ = ["create_sandbox_app"]

logger = logging.getLogger("sandlot.api.sandbox")

ENVD_PORT = oci.INIT_PORT
_HOST = re.compile(r"^(\d{1,5})-([a-z0-9][a-z0-9-]{0,62})\.")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_PLANE_HEADERS = frozenset({"e2b-sandbox-id", "e2b-sandbox-port", "x-access-token"})

TokenLookup = Callable[[str], Awaitable[str | None]]


def create_sandbox_app(
    resolver: target.Resolver,
    *,
    access_token_of: TokenLookup | None = None,
    limits: AdmissionSettings = AdmissionSettings(),
) -> ASGIApp:
    """The sandbox plane's ASGI app.

    Args:
        resolver: finds the sandbox a request names and checks its access token.
        access_token_of: the access token of a sandbox (None when it has none), to check signed
            ``/files`` URLs; without it, signed URLs are refused.
        limits: the port proxy's connection cap and timeouts (the ``proxy_*`` fields).

    Example:
        >>> app = create_sandbox_app(manager.resolve, access_token_of=manager.access_token)
        >>> uvicorn.run(app, port=3000)
    """
    processes = process.ProcessService()
    fs = filesystem.FilesystemService()

    def call(scope: Scope, deadline: float | None) -> rpc.Call:
        state = scope["state"]
        return rpc.Call(target=state["sandlot.target"], user=state["sandlot.user"], deadline=deadline)

    def unary(handler: Callable[..., Any]) -> connect.Endpoint:
        return connect.endpoint(connect.Kind.UNARY, handler, call)

    def server_stream(handler: Callable[..., Any], keepalive: dict[str, Any]) -> connect.Endpoint:
        return connect.endpoint(connect.Kind.SERVER_STREAM, handler, call, keepalive=keepalive)

    rpcs = {
        "/process.Process/Start": server_stream(processes.start, process.KEEPALIVE),
        "/process.Process/Connect": server_stream(processes.connect, process.KEEPALIVE),
        "/process.Process/List": unary(processes.list_processes),
        "/process.Process/SendInput": unary(processes.send_input),
        "/process.Process/StreamInput": connect.endpoint(connect.Kind.CLIENT_STREAM, processes.stream_input, call),
        "/process.Process/CloseStdin": unary(processes.close_stdin),
        "/process.Process/SendSignal": unary(processes.send_signal),
        "/process.Process/Update": unary(processes.update),
        "/filesystem.Filesystem/Stat": unary(fs.stat),
        "/filesystem.Filesystem/MakeDir": unary(fs.make_dir),
        "/filesystem.Filesystem/Move": unary(fs.move),
        "/filesystem.Filesystem/ListDir": unary(fs.list_dir),
        "/filesystem.Filesystem/Remove": unary(fs.remove),
        "/filesystem.Filesystem/WatchDir": server_stream(fs.watch_dir, filesystem.KEEPALIVE),
        "/filesystem.Filesystem/CreateWatcher": unary(fs.create_watcher),
        "/filesystem.Filesystem/GetWatcherEvents": unary(fs.get_watcher_events),
        "/filesystem.Filesystem/RemoveWatcher": unary(fs.remove_watcher),
    }

    async def get_files(request: Request) -> Response:
        return await files.download(request, call(request.scope, None), fs.io)

    async def post_files(request: Request) -> Response:
        return await files.upload(request, call(request.scope, None), fs.io)

    async def health(request: Request) -> Response:
        return Response(status_code=204)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return files.error_response(exc.status_code, str(exc.detail))

    routes = [Route(path, app, methods=["POST"]) for path, app in rpcs.items()]
    routes += [
        Route("/files", get_files, methods=["GET"]),
        Route("/files", post_files, methods=["POST"]),
        Route("/health", health, methods=["GET", "HEAD"]),
    ]
    envd = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return SandboxPlane(envd, resolver, access_token_of, limits)


class SandboxPlane:
    """Resolves the sandbox of each request, then serves envd's routes or proxies a port."""

    def __init__(
        self, envd: ASGIApp, resolver: target.Resolver, access_token_of: TokenLookup | None, limits: AdmissionSettings
    ) -> None:
        self.envd = envd
        self.resolver = resolver
        self.access_token_of = access_token_of
        self.limits = limits
        self._proxy: httpx.AsyncClient | None = None
        self._proxied: dict[str, int] = {}
        """Requests being proxied to each sandbox's ports."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.envd(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # websockets to sandbox ports: not proxied yet; the server closes them
        request = Request(scope)
        headers = request.headers
        sandbox_id = headers.get("e2b-sandbox-id", "")
        port_text = headers.get("e2b-sandbox-port", "")
        if not sandbox_id and (match := _HOST.match(headers.get("host", ""))):
            port_text, sandbox_id = match.group(1), match.group(2)
        if not sandbox_id:
            await _error(scope, receive, send, 400, "the request names no sandbox: send E2b-Sandbox-Id")
            return
        port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else ENVD_PORT if not port_text else -1
        if not 1 <= port <= 65535:
            await _error(scope, receive, send, 400, f"E2b-Sandbox-Port {port_text!r} is not a port number")
            return
        try:
            token = await self._token(request, sandbox_id, port)
            sandbox = await self.resolver(sandbox_id, token)
        except target.SandboxGone:
            await _error(scope, receive, send, codes.GONE.status, codes.GONE_MESSAGE)
            return
        except target.TokenRejected:
            await _error(scope, receive, send, 401, "invalid or missing access token for this sandbox")
            return
        except files.SignatureError as exc:
            await _error(scope, receive, send, exc.status, str(exc))
            return
        sandbox.touch()
        if port != ENVD_PORT:
            await self._forward(scope, receive, send, sandbox, port)
            return
        try:
            user = _user(request, sandbox.default_user)
        except ValueError as exc:
            await _error(scope, receive, send, 400, str(exc))
            return
        scope.setdefault("state", {})
        scope["state"]["sandlot.target"] = sandbox
        scope["state"]["sandlot.user"] = user
        await self.envd(scope, receive, send)

    async def _token(self, request: Request, sandbox_id: str, port: int) -> str | None:
        """The access token to check: the header's, or the sandbox's own after a valid signature."""
        token = request.headers.get("x-access-token")
        if token is not None or port != ENVD_PORT or request.url.path != "/files":
            return token
        query = request.query_params
        sig = query.get("signature")
        if sig is None:
            return None
        if self.access_token_of is None:
            raise files.SignatureError(401, "signed URLs are not enabled on this server")
        real = await self.access_token_of(sandbox_id)
        if real is None:
            return None  # a sandbox without a token needs no signature
        files.check_signature(
            sig,
            sandbox_id=sandbox_id,
            path=query.get("path", ""),
            operation="read" if request.method in ("GET", "HEAD") else "write",
            user=query.get("username", ""),
            token=real,
            expiration_text=query.get("signature_expiration"),
        )
        return real

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, sandbox: target.SandboxTarget, port: int
    ) -> None:
        """Proxy one HTTP request to ``port`` inside the sandbox, if the sandbox has room for it."""
        sid, cap = sandbox.sandbox_id, self.limits.proxy_connections
        if self._proxied.get(sid, 0) >= cap:
            message = f"the sandbox has {cap} proxied requests open, the most one sandbox may have: retry when one ends"
            await _error(scope, receive, send, 429, message, {"Retry-After": "1"})
            return
        self._proxied[sid] = self._proxied.get(sid, 0) + 1
        try:
            await self._proxy_request(scope, receive, send, sandbox, port)
        finally:
            self._proxied[sid] -= 1
            if not self._proxied[sid]:
                del self._proxied[sid]

    async def _proxy_request(
        self, scope: Scope, receive: Receive, send: Send, sandbox: target.SandboxTarget, port: int
    ) -> None:
        """Proxy one HTTP request to ``port`` inside the sandbox, streaming both bodies."""
        idle, read = self.limits.proxy_idle_timeout, self.limits.proxy_read_timeout
        if self._proxy is None:
            self._proxy = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=5.0, read=read, write=idle, pool=5.0),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            )
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name.decode("latin-1").lower() not in _HOP_BY_HOP | _PLANE_HEADERS
        ]
        path = scope.get("raw_path") or scope["path"].encode()
        url = f"http://{sandbox.address}:{port}{path.decode('latin-1')}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")

        async def body() -> AsyncIterator[bytes]:
            while True:
                try:
                    message = await asyncio.wait_for(receive(), idle)
                except TimeoutError:
                    raise _ClientIdle from None
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        if not sandbox.address:
            await _closed_port(scope, receive, send, sandbox.sandbox_id, port)
            return
        request = self._proxy.build_request(scope["method"], url, headers=headers, content=body())
        try:
            response = await self._proxy.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            await _closed_port(scope, receive, send, sandbox.sandbox_id, port)
            return
        except _ClientIdle:
            await _error(scope, receive, send, 408, f"no byte of the request body came for {idle:g} s")
            return
        except httpx.ReadTimeout:
            await _error(scope, receive, send, 504, f"the sandbox's port {port} did not answer within {read:g} s")
            return
        except httpx.HTTPError as exc:
            await _error(scope, receive, send, 502, f"the sandbox's port {port} did not answer: {exc}")
            return
        try:
            out = [(k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in _HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                # A client that reads nothing of the answer is dropped (uvicorn closes it).
                await asyncio.wait_for(send({"type": "http.response.body", "body": chunk, "more_body": True}), idle)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            logger.info(
                "sandbox.proxy %s:%d: the client read nothing for %g s, dropped", sandbox.sandbox_id, port, idle
            )
        finally:
            await response.aclose()


class _ClientIdle(Exception):
    """The client sent no byte of a proxied request's body for the idle timeout."""


def _user(request: Request, default: str) -> str:
    """The sandbox user of a request: ``username`` on /files, Basic auth on RPCs."""
    if request.url.path == "/files":
        name = request.query_params.get("username") or ""
        return name or default
    auth = request.headers.get("authorization")
    if not auth:
        return default
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "basic":
        raise ValueError("Authorization must be Basic base64(user:)")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("Authorization Basic credentials are not valid base64") from None
    name = decoded.partition(":")[0]
    if "\0" in name:
        raise ValueError("the user name must not contain NUL")
    return name or default


async def _closed_port(scope: Scope, receive: Receive, send: Send, sandbox_id: str, port: int) -> None:
    """E2B's answer for a port nobody listens on; the SDK looks for "port is not open"."""
    body = {
        "code": 502,
        "message": "The sandbox is running but port is not open",
        "sandboxId": sandbox_id,
        "port": port,
    }
    await JSONResponse(body, status_code=502)(scope, receive, send)


async def _error(
    scope: Scope, receive: Receive, send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    await JSONResponse(codes.error_body(status, message), status_code=status, headers=headers)(scope, receive, send)
