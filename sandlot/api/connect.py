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

Framing of streams (both directions): ``u8 flags`` (0 message, 1 compressed, 2 end of stream),
``u32`` big-endian length, payload. The server ends every stream with one end-of-stream
envelope, ``{}`` or ``{"error": {"code": ..., "message": ...}}``, so a client always learns how
a stream ended. Agent errors become Connect codes through `CODES`, the one table of this
mapping; a unary error's HTTP status comes from the same table.

Limits: a unary body or a stream envelope above `MAX_MESSAGE` is refused with
``resource_exhausted`` (HTTP 413); a body that is not JSON, or a stream that does not hold
exactly one message where one is expected, is ``invalid_argument`` (400). Nothing a client sends
makes a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from sandlot.agent import rpc

__all__ = [
    "CODES",
    "MAX_MESSAGE",
    "Code",
    "ConnectError",
    "Endpoint",
    "Kind",
    "code_of",
    "endpoint",
    "error_for",
]

logger = logging.getLogger("sandlot.api.connect")

MAX_MESSAGE = 16 * 1024 * 1024
"""Largest unary request body or stream envelope accepted, in bytes."""
MAX_TIMEOUT_MS = 10**10 - 1
"""Connect allows at most 10 digits in ``connect-timeout-ms``."""

JSON = "application/json"
STREAM_JSON = "application/connect+json"

END_STREAM = 0x02
COMPRESSED = 0x01


class Code(str, enum.Enum):
    CANCELED = "canceled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid_argument"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data_loss"
    UNAUTHENTICATED = "unauthenticated"


# The one table: Connect code, the HTTP status of a unary error, the agent error it stands for.
CODES: tuple[tuple[Code, int, type[Exception] | None], ...] = (
    (Code.CANCELED, 499, None),
    (Code.UNKNOWN, 500, None),
    (Code.INVALID_ARGUMENT, 400, rpc.InvalidArgument),
    (Code.DEADLINE_EXCEEDED, 504, rpc.DeadlineExceeded),
    (Code.NOT_FOUND, 404, rpc.NotFound),
    (Code.ALREADY_EXISTS, 409, rpc.AlreadyExists),
    (Code.PERMISSION_DENIED, 403, rpc.PermissionDenied),
    (Code.RESOURCE_EXHAUSTED, 429, rpc.ResourceExhausted),
    (Code.FAILED_PRECONDITION, 400, rpc.FailedPrecondition),
    (Code.ABORTED, 409, None),
    (Code.OUT_OF_RANGE, 400, None),
    (Code.UNIMPLEMENTED, 501, rpc.Unimplemented),
    (Code.INTERNAL, 500, rpc.Internal),
    (Code.UNAVAILABLE, 503, rpc.Unavailable),
    (Code.DATA_LOSS, 500, None),
    (Code.UNAUTHENTICATED, 401, None),
)
_STATUS = {code: status for code, status, _ in CODES}
_BY_EXCEPTION = {exc: code for code, _, exc in CODES if exc is not None}
_BY_CODE = {code: exc for code, _, exc in CODES if exc is not None}


class ConnectError(Exception):
    """An error of the transport itself (bad framing, wrong content type, too large)."""

    def __init__(self, code: Code, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else _STATUS[code]


def code_of(exc: BaseException) -> Code:
    """The Connect code an exception is answered with (internal for anything unexpected)."""
    if isinstance(exc, ConnectError):
        return exc.code
    for cls in type(exc).__mro__:
        if cls in _BY_EXCEPTION:
            return _BY_EXCEPTION[cls]
    return Code.INTERNAL


def error_for(code: Code | str, message: str) -> Exception:
    """The exception a Connect error stands for (the other direction of `CODES`)."""
    cls = _BY_CODE.get(Code(code), rpc.AgentError)
    return cls(message)


def _error_body(exc: BaseException) -> dict[str, str]:
    code = code_of(exc)
    if code is Code.INTERNAL and not isinstance(exc, (rpc.AgentError, ConnectError)):
        logger.error("connect.handler.failed", exc_info=exc)
        return {"code": code.value, "message": f"internal error: {type(exc).__name__}"}
    return {"code": code.value, "message": str(exc)}


def _dumps(message: Any) -> bytes:
    # A file name that is not UTF-8 reaches us from os.fsdecode with lone surrogates; written
    # out as JSON ``\udcXX`` escapes, it comes back to us as the same name.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace")


def envelope(message: Any, flags: int = 0) -> bytes:
    payload = _dumps(message)
    return struct.pack(">BI", flags, len(payload)) + payload


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
                raise ConnectError(Code.UNIMPLEMENTED, "Connect procedures are called with POST", status=405)
            deadline = _deadline(headers)
            ctx = self.context(scope, deadline)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
            await _send_json_error(send, exc)
            return
        if self.kind is Kind.UNARY:
            await _unary(self.handler, ctx, deadline, headers, receive, send)
        elif self.kind is Kind.SERVER_STREAM:
            await _server_stream(self.handler, ctx, deadline, headers, receive, send, self.keepalive)
        else:
            await _client_stream(self.handler, ctx, deadline, headers, receive, send)


def _deadline(headers: Headers) -> float | None:
    raw = headers.get("connect-timeout-ms")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"connect-timeout-ms must be at most 10 digits, got {raw!r}",
        )
    return asyncio.get_running_loop().time() + int(raw) / 1000


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - asyncio.get_running_loop().time())


def _check_content_type(headers: Headers, expected: str) -> None:
    value = headers.get("content-type", "")
    if value.split(";")[0].strip().lower() != expected:
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"content-type must be {expected}, got {value or 'none'!r}",
            status=415,
        )


def _check_encoding(headers: Headers, name: str) -> None:
    value = headers.get(name, "identity").strip().lower()
    if value not in ("", "identity"):
        raise ConnectError(Code.UNIMPLEMENTED, f"{name} {value!r} is not supported: send identity")


async def _send_json_error(send: Send, exc: BaseException) -> None:
    status = exc.status if isinstance(exc, ConnectError) else _STATUS[code_of(exc)]
    body = _dumps(_error_body(exc))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _decode(payload: bytes) -> dict[str, Any]:
    if not payload.strip():
        return {}
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConnectError(Code.INVALID_ARGUMENT, f"the message is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConnectError(Code.INVALID_ARGUMENT, "the message nests too deeply") from None
    if not isinstance(message, dict):
        raise ConnectError(Code.INVALID_ARGUMENT, "the message must be a JSON object")
    return message


async def _read_body(headers: Headers, receive: Receive) -> bytes:
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_MESSAGE:
        raise ConnectError(Code.RESOURCE_EXHAUSTED, _too_large(int(length)), status=413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectError(Code.CANCELED, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_MESSAGE:
            raise ConnectError(Code.RESOURCE_EXHAUSTED, _too_large(size), status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(size: int) -> str:
    return f"the request of {size} bytes is over the limit of {MAX_MESSAGE} bytes"


class _Envelopes:
    """Splits a request body into envelopes as its chunks arrive."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._buffer = bytearray()
        self._done = False

    async def _fill(self, n: int) -> bool:
        while len(self._buffer) < n:
            if self._done:
                if self._buffer:
                    raise ConnectError(Code.INVALID_ARGUMENT, "the request ends inside an envelope")
                return False
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ConnectError(Code.CANCELED, "the client went away")
            self._buffer += message.get("body", b"")
            self._done = not message.get("more_body", False)
        return True

    async def next(self) -> dict[str, Any] | None:
        """The next message, or None at the end of the body."""
        if not await self._fill(5):
            return None
        flags, length = struct.unpack(">BI", self._buffer[:5])
        if length > MAX_MESSAGE:
            raise ConnectError(Code.RESOURCE_EXHAUSTED, _too_large(length), status=413)
        if flags & COMPRESSED:
            raise ConnectError(Code.UNIMPLEMENTED, "compressed envelopes are not supported")
        if flags:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"unexpected envelope flags {flags:#04x} from a client",
            )
        if not await self._fill(5 + length):
            raise ConnectError(Code.INVALID_ARGUMENT, "the request ends inside an envelope")
        payload = bytes(self._buffer[5 : 5 + length])
        del self._buffer[: 5 + length]
        return _decode(payload)


async def _unary(
    handler: Callable[..., Awaitable[dict[str, Any]]],
    ctx: Any,
    deadline: float | None,
    headers: Headers,
    receive: Receive,
    send: Send,
) -> None:
    try:
        _check_content_type(headers, JSON)
        _check_encoding(headers, "content-encoding")
        message = _decode(await _read_body(headers, receive))
        async with asyncio.timeout_at(deadline):
            reply = await handler(ctx, message)
    except TimeoutError:
        await _send_json_error(
            send,
            rpc.DeadlineExceeded("the call did not finish within connect-timeout-ms"),
        )
        return
    except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
        await _send_json_error(send, exc)
        return
    body = _dumps(reply)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _start_stream(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", STREAM_JSON.encode())],
        }
    )


async def _end_stream(send: Send, exc: BaseException | None) -> None:
    end = {} if exc is None else {"error": _error_body(exc)}
    await send(
        {
            "type": "http.response.body",
            "body": envelope(end, END_STREAM),
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
        _check_content_type(headers, STREAM_JSON)
        _check_encoding(headers, "connect-content-encoding")
        envelopes = _Envelopes(receive)
        message = await envelopes.next()
        if message is None:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                "a server-streaming call needs exactly one request message",
            )
        if await envelopes.next() is not None:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                "a server-streaming call takes exactly one request message",
            )
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
                        rpc.DeadlineExceeded("the stream reached connect-timeout-ms"),
                    )
                    return
                if keepalive is not None:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": envelope(keepalive),
                            "more_body": True,
                        }
                    )
                continue
            what, item = getter.result()
            if what == "message":
                await send(
                    {
                        "type": "http.response.body",
                        "body": envelope(item),
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
    headers: Headers,
    receive: Receive,
    send: Send,
) -> None:
    try:
        _check_content_type(headers, STREAM_JSON)
        _check_encoding(headers, "connect-content-encoding")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
        await _send_json_error(send, exc)
        return
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
        error = rpc.DeadlineExceeded("the call did not finish within connect-timeout-ms")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
        error = exc
    await _start_stream(send)
    if reply is not None:
        await send({"type": "http.response.body", "body": envelope(reply), "more_body": True})
    await _end_stream(send, error)
