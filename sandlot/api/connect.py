"""A small Connect protocol v1 server for Starlette: JSON codec, unary, server and client streams.

Why hand-written: the e2b SDK uses a small corner of Connect (POST only, JSON only, no
compression; see docs/e2b-wire.md section 4), and the exact bytes matter more than breadth
(``application/connect+json`` with no ``charset``; an end-of-stream envelope after the last
event; keepalives on quiet streams). A generated server would hide those choices.

Each procedure is an ASGI endpoint made by `endpoint`. Its handler gets a context object (made
by the app from the scope: who calls, on which sandbox) and the decoded request message:

* unary:         ``async def handler(ctx, message) -> dict``
* server stream: ``def handler(ctx, message) -> AsyncIterator[dict]``
* client stream: ``async def handler(ctx, messages: AsyncIterator[dict]) -> dict``

The framing (envelopes, content types) is `sandlot._wire.framing`, shared with the SDK. The
server ends every stream with one end-of-stream envelope, ``{}`` or ``{"error": {"code": ...,
"message": ...}}``, so a client always learns how a stream ended. A handler fails by raising a
`sandlot._wire.errors.WireError`: its code goes in the body, and a unary error's HTTP status is
Connect's status of that code (`sandlot._wire.codes.STATUS`, the one table); anything else is
``internal`` and logged.

Limits: a unary body or a stream envelope above `MAX_MESSAGE` is refused with
``resource_exhausted`` (HTTP 413); a body that is not JSON, or a stream that does not hold
exactly one message where one is expected, is ``invalid_argument`` (400). Nothing a client sends
makes a 500.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from sandlot._wire import errors, framing

__all__ = [
    "MAX_MESSAGE",
    "Endpoint",
    "Kind",
    "endpoint",
]

logger = logging.getLogger("sandlot.api.connect")

MAX_MESSAGE = 16 * 1024 * 1024
"""Largest unary request body or stream envelope accepted, in bytes."""
MAX_TIMEOUT_MS = 10**10 - 1
"""Connect allows at most 10 digits in ``connect-timeout-ms``."""


def _error_body(exc: BaseException) -> dict[str, str]:
    if not isinstance(exc, errors.WireError):
        logger.error("connect.handler.failed", exc_info=exc)
        return {"code": errors.Internal.fault.code.value, "message": f"internal error: {type(exc).__name__}"}
    return {"code": exc.code.value, "message": str(exc)}


class Kind(enum.Enum):
    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"


ContextFactory = Callable[[Scope, "float | None"], Any]


def endpoint(
    kind: Kind,
    handler: Callable[..., Any],
    context: ContextFactory,
    *,
    keepalive: dict[str, Any] | None = None,
) -> Endpoint:
    """The ASGI app of one procedure.

    Args:
        kind: how messages flow.
        handler: the service method (see the module docstring for its shape).
        context: makes the handler's first argument from the scope and the call's deadline
            (event loop time, or None).
        keepalive: for server streams, the message sent when nothing else was sent for the
            interval the client asks for in ``Keepalive-Ping-Interval`` (50 s if it does not).
    """
    return Endpoint(kind, handler, context, keepalive)


class Endpoint:
    """One procedure as an ASGI app (a class, so that Starlette's `Route` mounts it as is)."""

    def __init__(
        self, kind: Kind, handler: Callable[..., Any], context: ContextFactory, keepalive: dict[str, Any] | None
    ) -> None:
        self.kind = kind
        self.handler = handler
        self.context = context
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        try:
            if scope["method"] != "POST":
                raise errors.Unimplemented("Connect procedures are called with POST", status=405)
            deadline = _deadline(headers)
            ctx = self.context(scope, deadline)
            if self.kind is Kind.UNARY:
                _check_content_type(headers, framing.JSON)
                _check_encoding(headers, "content-encoding")
            else:
                _check_content_type(headers, framing.STREAM_JSON)
                _check_encoding(headers, "connect-content-encoding")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
            await _send_json_error(send, exc)
            return
        if self.kind is Kind.UNARY:
            await _unary(self.handler, ctx, deadline, headers, receive, send)
        elif self.kind is Kind.SERVER_STREAM:
            await _server_stream(self.handler, ctx, deadline, headers, receive, send, self.keepalive)
        else:
            await _client_stream(self.handler, ctx, deadline, receive, send)


def _deadline(headers: Headers) -> float | None:
    raw = headers.get("connect-timeout-ms")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise errors.InvalidArgument(f"connect-timeout-ms must be at most 10 digits, got {raw!r}")
    return asyncio.get_running_loop().time() + int(raw) / 1000


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - asyncio.get_running_loop().time())


def _check_content_type(headers: Headers, expected: str) -> None:
    value = headers.get("content-type", "")
    if value.split(";")[0].strip().lower() != expected:
        raise errors.InvalidArgument(f"content-type must be {expected}, got {value or 'none'!r}", status=415)


def _check_encoding(headers: Headers, name: str) -> None:
    value = headers.get(name, "identity").strip().lower()
    if value not in ("", "identity"):
        raise errors.Unimplemented(f"{name} {value!r} is not supported: send identity")


async def _send_json(send: Send, status: int, message: Any) -> None:
    body = framing.encode_message(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", framing.JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_json_error(send: Send, exc: BaseException) -> None:
    status = exc.connect_status if isinstance(exc, errors.WireError) else errors.Internal.fault.status
    await _send_json(send, status, _error_body(exc))


async def _read_body(headers: Headers, receive: Receive) -> bytes:
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_MESSAGE:
        raise errors.ResourceExhausted(_too_large(int(length)), status=413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _went_away()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_MESSAGE:
            raise errors.ResourceExhausted(_too_large(size), status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(size: int) -> str:
    return f"the request of {size} bytes is over the limit of {MAX_MESSAGE} bytes"


class _RequestDecoder(framing.Decoder):
    """A client sends plain message envelopes only: the header alone refuses anything else."""

    def check_header(self, flags: int, length: int) -> None:
        super().check_header(flags, length)
        if flags & framing.FLAG_COMPRESSED:
            raise errors.Unimplemented("compressed envelopes are not supported")
        if flags:
            raise errors.InvalidArgument(f"unexpected envelope flags {flags:#04x} from a client")


class _Envelopes:
    """Splits a request body into envelopes as its chunks arrive."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._decoder = _RequestDecoder(MAX_MESSAGE)
        self._ready: collections.deque[framing.Envelope] = collections.deque()
        self._done = False

    async def next(self) -> dict[str, Any] | None:
        """The next message, or None at the end of the body."""
        while not self._ready:
            if self._done:
                self._decoder.close()
                return None
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise _went_away()
            self._ready.extend(self._decoder.feed(message.get("body", b"")))
            self._done = not message.get("more_body", False)
        return self._ready.popleft().message()


def _went_away() -> errors.Canceled:
    return errors.Canceled("the client went away")


async def _unary(
    handler: Callable[..., Awaitable[dict[str, Any]]],
    ctx: Any,
    deadline: float | None,
    headers: Headers,
    receive: Receive,
    send: Send,
) -> None:
    try:
        message = framing.decode_message(await _read_body(headers, receive))
        async with asyncio.timeout_at(deadline):
            reply = await handler(ctx, message)
    except TimeoutError:
        await _send_json_error(
            send,
            errors.DeadlineExceeded("the call did not finish within connect-timeout-ms"),
        )
        return
    except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
        await _send_json_error(send, exc)
        return
    await _send_json(send, 200, reply)


async def _start_stream(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", framing.STREAM_JSON.encode())],
        }
    )


async def _end_stream(send: Send, exc: BaseException | None) -> None:
    await send(
        {
            "type": "http.response.body",
            "body": framing.end_stream(None if exc is None else _error_body(exc)),
            "more_body": False,
        }
    )


def _keepalive_interval(headers: Headers) -> float:
    raw = headers.get("keepalive-ping-interval", "")
    try:
        value = float(raw)
    except ValueError:
        return 50.0
    return min(max(value, 1.0), 300.0)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _server_stream(
    handler: Callable[..., AsyncIterator[dict[str, Any]]],
    ctx: Any,
    deadline: float | None,
    headers: Headers,
    receive: Receive,
    send: Send,
    keepalive: dict[str, Any] | None,
) -> None:
    try:
        envelopes = _Envelopes(receive)
        message = await envelopes.next()
        if message is None:
            raise errors.InvalidArgument("a server-streaming call needs exactly one request message")
        if await envelopes.next() is not None:
            raise errors.InvalidArgument("a server-streaming call takes exactly one request message")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
        await _send_json_error(send, exc)
        return

    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=16)

    async def produce() -> None:
        try:
            async with contextlib.aclosing(handler(ctx, message)) as messages:  # type: ignore[type-var]
                async for item in messages:
                    await queue.put(("message", item))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
            await queue.put(("error", exc))
        else:
            await queue.put(("end", None))

    interval = _keepalive_interval(headers)
    producer = asyncio.create_task(produce())
    gone = asyncio.create_task(_wait_disconnect(receive))
    await _start_stream(send)
    try:
        while True:
            remaining = _remaining(deadline)
            getter = asyncio.ensure_future(queue.get())
            timeout = interval if remaining is None else min(interval, remaining)
            done, _ = await asyncio.wait({getter, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                getter.cancel()
                return  # the client went away: the handler is cancelled below, nothing to send
            if getter not in done:
                getter.cancel()
                if deadline is not None and asyncio.get_running_loop().time() >= deadline - 0.001:
                    producer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await producer
                    await _end_stream(
                        send,
                        errors.DeadlineExceeded("the stream reached connect-timeout-ms"),
                    )
                    return
                if keepalive is not None:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": framing.encode_envelope(keepalive),
                            "more_body": True,
                        }
                    )
                continue
            what, item = getter.result()
            if what == "message":
                await send(
                    {
                        "type": "http.response.body",
                        "body": framing.encode_envelope(item),
                        "more_body": True,
                    }
                )
            else:
                await _end_stream(send, item)
                return
    finally:
        for task in (producer, gone):
            task.cancel()
        for task in (producer, gone):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _client_stream(
    handler: Callable[..., Awaitable[dict[str, Any]]],
    ctx: Any,
    deadline: float | None,
    receive: Receive,
    send: Send,
) -> None:
    envelopes = _Envelopes(receive)

    async def messages() -> AsyncIterator[dict[str, Any]]:
        while (item := await envelopes.next()) is not None:
            yield item

    error: BaseException | None = None
    reply: dict[str, Any] | None = None
    try:
        async with asyncio.timeout_at(deadline):
            reply = await handler(ctx, messages())
    except TimeoutError:
        error = errors.DeadlineExceeded("the call did not finish within connect-timeout-ms")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
        error = exc
    await _start_stream(send)
    if reply is not None:
        await send({"type": "http.response.body", "body": framing.encode_envelope(reply), "more_body": True})
    await _end_stream(send, error)
