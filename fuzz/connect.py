"""Fuzz target: the Connect protocol parsers, server and SDK side.

Input: byte 0 picks the case, byte 1 the size of the pieces the body arrives in (1-256
bytes), the rest is the body.

* cases 0-2: the body is the request of a unary, server-stream or client-stream call to an
  echo procedure served by `sandlot.api.connect` (the handlers only echo, so what is under
  test is the transport: the content checks, the envelope framing and the JSON decoding).
  The properties: never a 500 or an exception out of the app; an error is a JSON body with
  a known Connect code; a stream answer is well framed for the SDK's decoder and ends with
  one end-of-stream envelope that carries no ``internal`` error.
* cases 3-4: the body is what a server sent back, read by the SDK's stream decoder or its
  unary parser. The property: nothing but a `SandlotError` comes out.

Run: ``python -m fuzz.connect [libFuzzer flags] [corpus dirs]``; ``python -m fuzz`` runs it
for a bounded time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import atheris
import httpx

with atheris.instrument_imports(include=["sandlot"]):
    from sandlot._wire import codes, framing
    from sandlot.api import connect
    from sandlot.sdk import exceptions
    from sandlot.sdk._core import connect as sdk_connect

from starlette.routing import Route, Router

from fuzz import _harness

CODES = {code.value for code in codes.Code}


async def _echo(ctx: None, message: dict[str, Any]) -> dict[str, Any]:
    return message


async def _echo_stream(ctx: None, message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield message


async def _count(ctx: None, messages: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return {"count": len([m async for m in messages])}


def _no_context(scope: object, deadline: float | None) -> None:
    return None


CALLS = (
    ("/unary", connect.Kind.UNARY, _echo, framing.JSON),
    ("/server-stream", connect.Kind.SERVER_STREAM, _echo_stream, framing.STREAM_JSON),
    ("/client-stream", connect.Kind.CLIENT_STREAM, _count, framing.STREAM_JSON),
)
APP = Router(
    routes=[
        Route(path, connect.endpoint(kind, handler, _no_context), methods=["POST"])
        for path, kind, handler, _ in CALLS
    ]
)
CLIENT = httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://sandbox")


def _check_error_body(status: int, body: bytes) -> None:
    error = json.loads(body)
    assert isinstance(error, dict), f"HTTP {status} without a JSON object: {body[:200]!r}"
    assert error.get("code") in CODES, f"HTTP {status} without a Connect code: {body[:200]!r}"
    assert isinstance(error.get("message"), str), f"HTTP {status} error without a message: {body[:200]!r}"


def _check_stream(body: bytes) -> None:
    decoder = sdk_connect.EnvelopeDecoder()
    envelopes = decoder.feed(body)
    decoder.close()
    assert envelopes and envelopes[-1].end_stream, f"no end-of-stream envelope at the end: {body[:200]!r}"
    assert not any(e.end_stream for e in envelopes[:-1]), "an end-of-stream envelope before the end"
    error = envelopes[-1].message().get("error")
    if error is not None:
        assert error.get("code") in CODES - {"internal", "unknown"}, f"the stream ended with {error!r}"


async def _call(case: int, size: int, body: bytes) -> None:
    path, kind, _, content_type = CALLS[case]
    reply = await CLIENT.post(path, content=_harness.chunked(body, size), headers={"content-type": content_type})
    assert reply.status_code != 500, f"HTTP 500: {reply.content[:300]!r}"
    if reply.status_code != 200:
        _check_error_body(reply.status_code, reply.content)
    elif kind is connect.Kind.UNARY:
        assert isinstance(json.loads(reply.content), dict)
    else:
        assert reply.headers["content-type"] == framing.STREAM_JSON
        _check_stream(reply.content)


def _read_as_sdk(case: int, size: int, body: bytes) -> None:
    try:
        if case == 3:
            decoder = sdk_connect.EnvelopeDecoder()
            for start in range(0, len(body), size):
                for _ in sdk_connect.iter_messages(decoder, body[start : start + size], context="filesystem"):
                    pass
            decoder.close()
        else:
            sdk_connect.parse_unary(200 if size % 2 else 400 + size, "application/json", body, context="filesystem")
    except exceptions.SandlotError:
        pass


async def test_one_input(data: bytes) -> None:
    options, body = _harness.split_options(data, 2)
    case, size = options[0] % 5, options[1] + 1
    if case < len(CALLS):
        await _call(case, size, body)
    else:
        _read_as_sdk(case, size, body)


if __name__ == "__main__":
    _harness.fuzz_async(test_one_input)
