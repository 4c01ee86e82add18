"""Connect framing, headers and error answers, fed with real bytes (no server)."""

from __future__ import annotations

import struct

import pytest

from sandlot.sdk import exceptions
from sandlot.sdk._core import connect


def test_envelope_bytes_are_flag_length_payload() -> None:
    assert connect.encode_envelope({"process": {"pid": 42}}) == b'\x00\x00\x00\x00\x16{"process":{"pid":42}}'
    assert connect.encode_envelope({}, connect.FLAG_END_STREAM) == b"\x02\x00\x00\x00\x02{}"


def test_decoder_reassembles_envelopes_split_at_every_byte() -> None:
    stream = (
        connect.encode_envelope({"event": {"start": {"pid": 7}}})
        + connect.encode_envelope({"event": {"data": {"stdout": "aGkK"}}})
        + connect.encode_envelope({}, connect.FLAG_END_STREAM)
    )
    decoder = connect.EnvelopeDecoder()
    envelopes = []
    for i in range(len(stream)):
        envelopes += decoder.feed(stream[i : i + 1])
    decoder.close()
    assert [e.flags for e in envelopes] == [0, 0, 2]
    assert envelopes[1].message() == {"event": {"data": {"stdout": "aGkK"}}}
    assert envelopes[2].end_stream


def test_decoder_reads_json_with_spaces_as_old_servers_send_it() -> None:
    payload = b'{"event": {"start": {"pid": 3}}}'
    frame = struct.pack(">BI", 0, len(payload)) + payload
    [envelope] = connect.EnvelopeDecoder().feed(frame)
    assert envelope.message() == {"event": {"start": {"pid": 3}}}


def test_stream_cut_inside_an_envelope_is_a_protocol_error() -> None:
    decoder = connect.EnvelopeDecoder()
    decoder.feed(connect.encode_envelope({"a": 1})[:-1])
    with pytest.raises(exceptions.ProtocolError, match="inside an envelope"):
        decoder.close()


def test_absurd_length_is_refused_before_buffering() -> None:
    with pytest.raises(exceptions.ProtocolError, match="too large"):
        connect.EnvelopeDecoder().feed(b"\x00\xff\xff\xff\xff")


def test_compressed_envelope_is_refused() -> None:
    [envelope] = connect.EnvelopeDecoder().feed(b"\x01\x00\x00\x00\x02{}")
    with pytest.raises(exceptions.ProtocolError, match="compressed"):
        envelope.message()


def test_end_of_stream_error_maps_through_the_table() -> None:
    frame = connect.encode_envelope(
        {"error": {"code": "deadline_exceeded", "message": "too slow"}}, connect.FLAG_END_STREAM
    )
    decoder = connect.EnvelopeDecoder()
    with pytest.raises(exceptions.TimeoutError, match="too slow"):
        list(connect.iter_messages(decoder, frame))
    frame = connect.encode_envelope({"error": {"code": "not_found", "message": "no /x"}}, connect.FLAG_END_STREAM)
    with pytest.raises(exceptions.PathNotFoundError):
        list(connect.iter_messages(connect.EnvelopeDecoder(), frame, context="filesystem"))


def test_iter_messages_marks_clean_end_with_none() -> None:
    data = connect.encode_envelope({"a": 1}) + connect.encode_envelope(
        {"metadata": {"x": ["y"]}}, connect.FLAG_END_STREAM
    )
    assert list(connect.iter_messages(connect.EnvelopeDecoder(), data)) == [{"a": 1}, None]


def test_unary_success_tolerates_charset_parameter() -> None:
    assert connect.parse_unary(200, "application/json; charset=utf-8", b'{"entry": {"name": "a"}}') == {
        "entry": {"name": "a"}
    }
    assert connect.parse_unary(200, "application/json", b"") == {}


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (404, b'{"code":"not_found","message":"no pid 9"}', exceptions.NotFoundError),
        (400, b'{"code":"invalid_argument","message":"bad"}', exceptions.InvalidArgumentError),
        (401, b'{"code":"unauthenticated","message":"bad token"}', exceptions.AuthenticationError),
        (409, b'{"code":"already_exists","message":"exists"}', exceptions.AlreadyExistsError),
        (429, b'{"code":"resource_exhausted","message":"slow down"}', exceptions.RateLimitedError),
        (501, b'{"code":"unimplemented","message":"later"}', exceptions.UnsupportedError),
        # proxy-style answers: an integer code, or no JSON at all
        (502, b'{"code":502,"message":"The sandbox was not found"}', exceptions.SandboxNotRunningError),
        (503, b"upstream busy", exceptions.UnavailableError),
        (504, b"", exceptions.TimeoutError),
        (500, b"<html>oops</html>", exceptions.ServerError),
        (418, b"teapot", exceptions.ServerError),
    ],
)
def test_unary_errors(status: int, body: bytes, cls: type[exceptions.SandlotError]) -> None:
    with pytest.raises(cls) as info:
        connect.parse_unary(status, "application/json", body)
    assert type(info.value) is cls
    assert info.value.status == status


def test_stream_content_type_must_be_exact() -> None:
    connect.check_stream_response(200, "application/connect+json")
    with pytest.raises(exceptions.ProtocolError):
        connect.check_stream_response(200, "application/connect+json; charset=utf-8")
    with pytest.raises(exceptions.SandboxNotRunningError):
        connect.check_stream_response(502, "", b'{"code":502,"message":"The sandbox was not found"}')


def test_headers() -> None:
    unary = connect.unary_headers(60)
    assert unary["connect-protocol-version"] == "1"
    assert unary["content-encoding"] == "identity"
    assert unary["connect-timeout-ms"] == "60000"
    assert "connect-timeout-ms" not in connect.unary_headers(None)
    stream = connect.stream_headers(2.5)
    assert stream["content-type"] == "application/connect+json"
    assert stream["connect-timeout-ms"] == "2500"
    assert stream["keepalive-ping-interval"] == "50"
    assert "connect-timeout-ms" not in connect.stream_headers(0)
    assert connect.basic_auth("root") == {"authorization": "Basic cm9vdDo="}
    assert connect.basic_auth(None) == {}


def test_base64_both_alphabets_with_and_without_padding() -> None:
    assert connect.b64encode(b"data") == "ZGF0YQ=="
    assert connect.b64decode("ZGF0YQ==") == connect.b64decode("ZGF0YQ") == b"data"
    assert connect.b64decode("_-8") == connect.b64decode("/+8=") == b"\xff\xef"


def test_json_nested_past_the_recursion_limit_is_a_protocol_error() -> None:
    """Found while writing fuzz/connect.py: Python's JSON decoder raises RecursionError, not ValueError."""
    deep = b"[" * 5000
    with pytest.raises(exceptions.ProtocolError):
        connect.parse_unary(200, "application/json", deep)
    with pytest.raises(exceptions.ServerError):
        connect.parse_unary(500, "application/json", deep)
    [envelope] = connect.EnvelopeDecoder().feed(struct.pack(">BI", connect.FLAG_END_STREAM, len(deep)) + deep)
    with pytest.raises(exceptions.ProtocolError):
        connect.check_end_stream(envelope)
