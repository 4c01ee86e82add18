"""The I/O under the SDK: one ``httpx.AsyncClient``, and the three ways requests go out.

* control-plane calls (:meth:`AsyncConnection.api`): a :class:`~sandlot.sdk._core.api.Request`
  sent with the API key;
* Connect calls on the sandbox plane (:meth:`AsyncConnection.rpc`, :meth:`~AsyncConnection.stream`);
* ``/files`` transfers (:meth:`AsyncConnection.files_request`).

Everything that is not moving bytes — building messages, parsing answers, mapping errors — is in
``_core``; transport failures are translated here, at the boundary, and keep their cause.

Example:
    >>> connection = AsyncConnection(ConnectionConfig.from_env())
    >>> await connection.api(api.get_sandbox("s1"), api.parse_info)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Self, TypeVar

import httpx

from sandlot.sdk import _synchronization, exceptions
from sandlot.sdk._core import api, connect, errors
from sandlot.sdk._core.config import ConnectionConfig

__all__ = ["AsyncClosing", "AsyncConnection", "AsyncMessageStream", "read_all"]

T = TypeVar("T")

logger = logging.getLogger("sandlot.sdk")


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle (~18 ms), which
    would otherwise be paid by every `Sandbox.create`."""
    return ssl.create_default_context()


def _timeout(seconds: float | None) -> httpx.Timeout:
    return httpx.Timeout(seconds or None, connect=min(seconds or 30.0, 30.0))


class AsyncClosing:
    """Something to close with :meth:`aclose`; as a context manager, at the end of the block."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncConnection(AsyncClosing):
    """An HTTP client for one server, shared by a sandbox and its ``commands``, ``files``, ``pty``.

    Example:
        >>> async with AsyncConnection(config) as connection:
        ...     handle = await connection.api(api.create_sandbox(), api.parse_handle)
    """

    def __init__(self, config: ConnectionConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client or httpx.AsyncClient(
            timeout=_timeout(config.request_timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            verify=_tls(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---------------------------------------------------------------- control plane

    async def api(
        self,
        request: api.Request,
        parse: Callable[[int, Mapping[str, str], bytes], T],
    ) -> T:
        """Send a control-plane request and parse its answer with ``parse``.

        A 429 is sent again after its ``Retry-After``, as the config's retry policy allows
        (:mod:`sandlot.sdk._core.retry`); the last one's :class:`RateLimitedError` is raised.
        """
        url = self.config.api_url + request.path
        headers = self.config.api_headers()
        timeout = (
            _timeout(max(request.timeout, self.config.request_timeout))
            if request.timeout is not None and self.config.request_timeout
            else httpx.USE_CLIENT_DEFAULT
        )
        policy = self.config.retry_policy()
        attempt = 0
        while True:
            try:
                response = await self._client.request(
                    request.method, url, params=request.params, json=request.json, headers=headers, timeout=timeout
                )
            except httpx.TransportError as exc:
                raise errors.error_from_transport(exc, self.config.api_url) from exc
            try:
                return parse(response.status_code, response.headers, response.content)
            except exceptions.RateLimitedError as exc:
                delay = policy.delay(attempt, exc)
                if delay is None:
                    raise
            attempt += 1
            logger.info("%s %s: 429, retry %d in %.1f s", request.method, request.path, attempt, delay)
            await _synchronization.asleep(delay)

    # ---------------------------------------------------------------- sandbox plane

    async def rpc(
        self,
        route: str,
        message: dict[str, Any],
        *,
        headers: Mapping[str, str],
        timeout: float | None = None,
        context: str | None = None,
    ) -> dict[str, Any]:
        """A unary Connect call: one message out, one message back (or the mapped error)."""
        timeout = self.config.request_timeout if timeout is None else timeout
        base = self.config.sandbox_base_url()
        try:
            response = await self._client.post(
                base + route,
                content=connect.encode_message(message),
                headers={**headers, **connect.unary_headers(timeout)},
                timeout=_timeout(timeout),
            )
        except httpx.TransportError as exc:
            raise errors.error_from_transport(exc, base) from exc
        return connect.parse_unary(
            response.status_code, response.headers.get("content-type", ""), response.content, context=context
        )

    async def stream(
        self,
        route: str,
        message: dict[str, Any],
        *,
        headers: Mapping[str, str],
        timeout: float | None,
        context: str | None = None,
    ) -> AsyncMessageStream:
        """Open a server-streaming Connect call; iterate the result for its messages.

        ``timeout`` is the call's deadline (None or 0: none). The read timeout is the deadline plus
        a margin, so a server that honours the deadline ends the stream first and says why.
        """
        base = self.config.sandbox_base_url()
        read = (timeout + 10.0) if timeout else None
        request = self._client.build_request(
            "POST",
            base + route,
            content=connect.encode_envelope(message),
            headers={**headers, **connect.stream_headers(timeout)},
            timeout=httpx.Timeout(read, connect=30.0),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise errors.error_from_transport(exc, base) from exc
        if response.status_code != 200:
            connect.check_stream_response(response.status_code, "", await read_all(response), context=context)
        try:
            connect.check_stream_response(200, response.headers.get("content-type", ""), context=context)
        except BaseException:
            await response.aclose()
            raise
        return AsyncMessageStream(response, base, context)

    async def files_request(
        self,
        method: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str],
        content: Any = None,
        files: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Open a ``/files`` request; the caller reads (or streams) and closes the response."""
        base = self.config.sandbox_base_url()
        request = self._client.build_request(
            method,
            base + "/files",
            params=params,
            headers=dict(headers),
            content=content,
            files=files,
            timeout=_timeout(self.config.request_timeout if timeout is None else timeout),
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise errors.error_from_transport(exc, base) from exc


async def read_all(response: httpx.Response) -> bytes:
    """The whole body of a streamed answer (a short one: JSON or an error); closes the response."""
    try:
        return await response.aread()
    finally:
        await response.aclose()


class AsyncMessageStream:
    """The messages of an open Connect stream, in order; ends at the end-of-stream envelope.

    Iterating raises the mapped error of an end-of-stream envelope that carries one, or of a
    broken connection. :meth:`aclose` drops the connection (the server sees the client leave).

    Example:
        >>> stream = await connection.stream(route, message, headers=h, timeout=60)
        >>> async for message in stream:
        ...     print(message)
    """

    def __init__(self, response: httpx.Response, base: str, context: str | None) -> None:
        self._response = response
        self._base = base
        self._context = context
        self._decoder = connect.EnvelopeDecoder()
        self._messages = self._iterate()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._messages

    async def __anext__(self) -> dict[str, Any]:
        return await self._messages.__anext__()

    async def first(self, ended: str) -> dict[str, Any]:
        """The first message (a stream's start event); ``ended`` is the error if there is none.

        Raises:
            ProtocolError: the stream ended before its first message (with ``ended``).
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise exceptions.ProtocolError(ended) from None
        except BaseException:
            await self.aclose()
            raise

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in self._response.aiter_raw():
                for message in connect.iter_messages(self._decoder, chunk, context=self._context):
                    if message is None:
                        return
                    yield message
            self._decoder.close()
        except httpx.TransportError as exc:
            if self._response.is_closed:
                return  # closed on purpose by ``aclose()``
            raise errors.error_from_transport(exc, self._base) from exc
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        # Another task or thread may be blocked reading this stream; closing a socket does not
        # wake a blocked read, shutting it down does. Without this, `disconnect()` of a
        # background command waited until the command ended.
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        await self._response.aclose()

