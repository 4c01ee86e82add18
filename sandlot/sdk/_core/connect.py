"""The Connect protocol (v1, JSON codec) as the SDK speaks it, without any I/O.

The sandbox plane speaks Connect: a unary call is a POST of one JSON message answered by one
JSON message; a streaming call frames every message in an *envelope* and ends with an
end-of-stream envelope whose payload may carry an ``error``. The framing itself is
:mod:`sandlot._wire.framing`, shared with the server; this module adds the client's side
(headers, reading answers) and turns malformed bytes into :class:`ProtocolError`.
docs/e2b-wire.md §4 is the reference.

Everything here is a pure function or a small state machine fed with bytes, so the I/O code in
``_async`` (and the ``_sync`` code generated from it) only moves bytes, and the tests can feed
real byte strings without a server.

Example:
    >>> frame = encode_envelope({"process": {"pid": 1}})
    >>> decoder = EnvelopeDecoder()
    >>> [e.message() for e in decoder.feed(frame)]
    [{'process': {'pid': 1}}]
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from sandlot._wire import codes, framing
from sandlot._wire import errors as wire
from sandlot.sdk import exceptions
from sandlot.sdk._core import errors

__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_END_STREAM",
    "STREAM_CONTENT_TYPE",
    "Envelope",
    "EnvelopeDecoder",
    "b64decode",
    "b64encode",
    "basic_auth",
    "check_end_stream",
    "encode_envelope",
    "parse_unary",
    "stream_headers",
    "unary_headers",
]

FLAG_COMPRESSED = framing.FLAG_COMPRESSED
FLAG_END_STREAM = framing.FLAG_END_STREAM
STREAM_CONTENT_TYPE = framing.STREAM_JSON
KEEPALIVE_INTERVAL = 50  # seconds; what the e2b SDK asks for, so proxies never see a silent stream
MAX_MESSAGE = 64 * 1024 * 1024  # a bigger length field means a broken stream, not a big message
encode_message = framing.encode_message
encode_envelope = framing.encode_envelope


def _protocol_error(exc: wire.WireError) -> exceptions.ProtocolError:
    """What the server sent is unreadable: that is the SDK's ProtocolError, not a server error.

    (Callers catch `WireError` themselves rather than through a context manager: these are the
    per-message paths of every stream.)
    """
    return exceptions.ProtocolError(str(exc))


class Envelope(framing.Envelope):
    """One frame of a Connect stream.

    Example:
        >>> Envelope(FLAG_END_STREAM, b"{}").end_stream
        True
    """

    def message(self) -> dict[str, Any]:
        """The payload parsed as a JSON object.

        Raises:
            ProtocolError: if it is compressed or not a JSON object.
        """
        try:
            return super().message()
        except wire.WireError as exc:
            raise _protocol_error(exc) from exc


class EnvelopeDecoder(framing.Decoder):
    """Cuts a byte stream into envelopes, whatever the chunk boundaries.

    Example:
        >>> frame = encode_envelope({"x": 1})
        >>> decoder = EnvelopeDecoder()
        >>> decoder.feed(frame[:3]), [e.payload for e in decoder.feed(frame[3:])]
        ([], [b'{"x":1}'])
    """

    envelope_type = Envelope

    def __init__(self) -> None:
        super().__init__(MAX_MESSAGE)

    def feed(self, data: bytes) -> list[framing.Envelope]:
        """Add ``data`` and return every envelope it completes.

        Raises:
            ProtocolError: for a length field over `MAX_MESSAGE`.
        """
        try:
            return super().feed(data)
        except wire.WireError as exc:
            raise _protocol_error(exc) from exc

    def close(self) -> None:
        """Declare the stream over; leftover bytes mean it was cut mid-envelope.

        Raises:
            ProtocolError: if part of an envelope is left.
        """
        try:
            super().close()
        except wire.WireError as exc:
            raise _protocol_error(exc) from exc


def check_end_stream(envelope: framing.Envelope, *, context: str | None = None) -> None:
    """Raise the error an end-of-stream envelope carries, if any.

    Example:
        >>> check_end_stream(Envelope(FLAG_END_STREAM, b'{"error":{"code":"deadline_exceeded","message":"late"}}'))
        Traceback (most recent call last):
        sandlot.sdk.exceptions.TimeoutError: late
    """
    try:
        end = envelope.message()
    except wire.WireError as exc:
        raise _protocol_error(exc) from exc
    error = end.get("error")
    if error:
        if not isinstance(error, dict):
            raise exceptions.ProtocolError(f"malformed end-of-stream error: {error!r}")
        raise errors.error_from_connect(
            str(error.get("code") or codes.Code.UNKNOWN.value), str(error.get("message") or ""), context=context
        )


def parse_unary(status: int, content_type: str, body: bytes, *, context: str | None = None) -> dict[str, Any]:
    """The response message of a unary call, or the mapped error.

    Args:
        status: The HTTP status.
        content_type: The ``Content-Type`` header (parameters allowed).
        body: The raw body.
        context: Narrows ``not_found`` (``"filesystem"`` → :class:`PathNotFoundError`).

    Example:
        >>> parse_unary(200, "application/json", b'{"entry":{"name":"a"}}')
        {'entry': {'name': 'a'}}
        >>> parse_unary(404, "application/json", b'{"code":"not_found","message":"no /x"}', context="filesystem")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.PathNotFoundError: no /x
    """
    if status != 200:
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("code"), str) and parsed["code"] in errors.CODES:
            message = str(parsed.get("message") or "")
            raise errors.error_from_connect(parsed["code"], message, status=status, context=context)
        raise errors.error_from_http(status, body, context=context)
    if not content_type.split(";")[0].strip().lower() == framing.JSON:
        raise exceptions.ProtocolError(f"unexpected content type {content_type!r} on a unary answer")
    try:
        return framing.decode_message(body)
    except wire.WireError as exc:
        raise _protocol_error(exc) from exc


def check_stream_response(status: int, content_type: str, body: bytes = b"", *, context: str | None = None) -> None:
    """Check the head of a streaming answer; a non-200 one carries a unary-style error.

    Example:
        >>> check_stream_response(200, "application/connect+json")
        >>> check_stream_response(200, "application/connect+json; charset=utf-8")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.ProtocolError: invalid stream content type 'application/connect+json; charset=utf-8'
    """
    if status != 200:
        parse_unary(status, framing.JSON, body, context=context)
        raise exceptions.ProtocolError(f"stream answered with HTTP {status}")
    if content_type.strip().lower() != STREAM_CONTENT_TYPE:
        raise exceptions.ProtocolError(f"invalid stream content type {content_type!r}")


def unary_headers(timeout: float | None) -> dict[str, str]:
    """Headers of a unary Connect call with a deadline of ``timeout`` seconds (None: no deadline).

    Example:
        >>> unary_headers(60)["connect-timeout-ms"]
        '60000'
    """
    headers = {
        "connect-protocol-version": "1",
        "content-type": framing.JSON,
        "accept-encoding": "identity",
        "content-encoding": "identity",
    }
    if timeout:
        headers["connect-timeout-ms"] = str(int(timeout * 1000))
    return headers


def stream_headers(timeout: float | None, *, keepalive: bool = True) -> dict[str, str]:
    """Headers of a streaming Connect call; ``timeout`` None or 0 means no deadline.

    Example:
        >>> stream_headers(None)["content-type"]
        'application/connect+json'
    """
    headers = {
        "connect-protocol-version": "1",
        "content-type": STREAM_CONTENT_TYPE,
        "connect-content-encoding": "identity",
        "connect-accept-encoding": "identity",
        "accept-encoding": "identity",
    }
    if timeout:
        headers["connect-timeout-ms"] = str(int(timeout * 1000))
    if keepalive:
        headers["keepalive-ping-interval"] = str(KEEPALIVE_INTERVAL)
    return headers


def basic_auth(user: str | None) -> dict[str, str]:
    """The header that selects the Linux user of an RPC (none: the server's default user).

    Example:
        >>> basic_auth("root")
        {'authorization': 'Basic cm9vdDo='}
    """
    if user is None:
        return {}
    return {"authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}


def b64encode(data: bytes) -> str:
    """Standard padded base64, as proto3 JSON writes ``bytes``.

    Example:
        >>> b64encode(b"hi\\n")
        'aGkK'
    """
    return base64.b64encode(data).decode("ascii")


def b64decode(value: str) -> bytes:
    """Proto3 JSON ``bytes``: standard or URL-safe base64, padded or not.

    Example:
        >>> b64decode("aGkK"), b64decode("_-8")
        (b'hi\\n', b'\\xff\\xef')
    """
    value = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(value + "=" * (-len(value) % 4))


def iter_messages(
    decoder: EnvelopeDecoder, data: bytes, *, context: str | None = None
) -> Iterator[dict[str, Any] | None]:
    """Messages completed by ``data``; ``None`` marks a clean end of stream.

    Raises:
        SandlotError: the mapped error of an end-of-stream envelope carrying one.

    Example:
        >>> d = EnvelopeDecoder()
        >>> list(iter_messages(d, encode_envelope({"a": 1}) + encode_envelope({}, FLAG_END_STREAM)))
        [{'a': 1}, None]
    """
    for envelope in decoder.feed(data):
        if envelope.end_stream:
            check_end_stream(envelope, context=context)
            yield None
        else:
            yield envelope.message()
