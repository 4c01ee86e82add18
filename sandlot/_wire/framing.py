"""Connect protocol v1 framing with the JSON codec, as bytes in and bytes out (docs/e2b-wire.md §4).

A unary call is a POST of one JSON message (`JSON`) answered by one. A streaming call
(`STREAM_JSON`, exactly that, with no ``charset``) frames every message in an *envelope*: one
flag byte, a big-endian u32 length, the JSON payload; the answer ends with one end-of-stream
envelope (`FLAG_END_STREAM`) whose payload is ``{}`` or ``{"error": {"code": ..., "message": ...}}``.

Both sides use these: the server (`sandlot.api.connect`) and the SDK (`sandlot.sdk._core.connect`),
which turns the `errors.WireError` raised here into its own ``ProtocolError``.

Example:
    >>> frame = encode_envelope({"process": {"pid": 1}})
    >>> [e.message() for e in Decoder(1024).feed(frame)]
    [{'process': {'pid': 1}}]
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any, ClassVar

from sandlot._wire import errors

__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_END_STREAM",
    "HEADER",
    "JSON",
    "STREAM_JSON",
    "Decoder",
    "Envelope",
    "decode_message",
    "encode_envelope",
    "encode_message",
    "end_stream",
]

JSON = "application/json"
STREAM_JSON = "application/connect+json"
FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
HEADER = struct.Struct(">BI")


def encode_message(message: Any) -> bytes:
    """Compact JSON, as Connect's JSON codec sends it.

    A file name that is not UTF-8 reaches the agent from `os.fsdecode` with lone surrogates;
    written out as JSON ``\\udcXX`` escapes, it comes back as the same name.

    Example:
        >>> encode_message({"a": 1})
        b'{"a":1}'
    """
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace")


def encode_envelope(message: Any, flags: int = 0) -> bytes:
    """One enveloped message: flags, length, JSON payload.

    Example:
        >>> encode_envelope({})
        b'\\x00\\x00\\x00\\x00\\x02{}'
    """
    payload = encode_message(message)
    return HEADER.pack(flags, len(payload)) + payload


def end_stream(error: dict[str, str] | None = None) -> bytes:
    """The envelope that ends a stream, carrying ``error`` (``{"code", "message"}``) if it failed.

    Example:
        >>> end_stream()
        b'\\x02\\x00\\x00\\x00\\x02{}'
    """
    return encode_envelope({} if error is None else {"error": error}, FLAG_END_STREAM)


def decode_message(payload: bytes) -> dict[str, Any]:
    """A JSON object from a payload (an empty one is ``{}``).

    Raises:
        InvalidArgument: if it is not JSON or not an object, or nests too deeply for the parser.
    """
    if not payload or payload.isspace():
        return {}
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.InvalidArgument(f"the message is not valid JSON: {exc}") from None
    except RecursionError:
        raise errors.InvalidArgument("the message nests too deeply") from None
    if not isinstance(message, dict):
        raise errors.InvalidArgument("the message must be a JSON object")
    return message


@dataclasses.dataclass(frozen=True)
class Envelope:
    """One frame of a Connect stream.

    Example:
        >>> Envelope(FLAG_END_STREAM, b"{}").end_stream
        True
    """

    flags: int
    payload: bytes

    @property
    def end_stream(self) -> bool:
        return bool(self.flags & FLAG_END_STREAM)

    def message(self) -> dict[str, Any]:
        """The payload as a JSON object.

        Raises:
            Unimplemented: if it is compressed (no compression is ever negotiated).
            InvalidArgument: as `decode_message`.
        """
        if self.flags & FLAG_COMPRESSED:
            raise errors.Unimplemented("compressed envelopes are not supported: none was negotiated")
        return decode_message(self.payload)


class Decoder:
    """Cuts a byte stream into envelopes, whatever the chunk boundaries.

    Args:
        limit: The largest payload accepted; a bigger length field is refused as soon as the
            header arrives, before its payload is read.

    Example:
        >>> frame = encode_envelope({"x": 1})
        >>> decoder = Decoder(1024)
        >>> decoder.feed(frame[:3]), [e.payload for e in decoder.feed(frame[3:])]
        ([], [b'{"x":1}'])
    """

    envelope_type: ClassVar[type[Envelope]] = Envelope

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Envelope]:
        """Add ``data`` and return every envelope it completes.

        Raises:
            ResourceExhausted: (status 413) for an envelope over the limit.
        """
        self._buffer += data
        out = []
        while len(self._buffer) >= HEADER.size:
            flags, length = HEADER.unpack_from(self._buffer)
            self.check_header(flags, length)
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            out.append(self.envelope_type(flags, bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return out

    def check_header(self, flags: int, length: int) -> None:
        """Refuse an envelope by its header alone; a side that refuses more flags extends this."""
        if length > self.limit:
            raise errors.ResourceExhausted(
                f"an envelope of {length} bytes is too large: the limit is {self.limit} bytes", status=413
            )

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole envelope."""
        return len(self._buffer)

    def close(self) -> None:
        """Declare the stream over.

        Raises:
            InvalidArgument: if part of an envelope is left.
        """
        if self._buffer:
            raise errors.InvalidArgument(f"the stream ends inside an envelope ({len(self._buffer)} bytes left)")
