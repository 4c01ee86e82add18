"""The one table of codes and statuses, held against the e2b SDK, the server's answers and the
sandlot SDK's parse, and shared by every side that speaks the wire (no copies)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import e2b
import httpx
import pytest
from connectrpc import code as connect_code
from connectrpc import errors as connect_errors
from connectrpc._protocol import _error_to_http_status
from e2b.envd import api as e2b_envd_api
from e2b.envd import client_shared as e2b_client
from e2b.envd import rpc as e2b_rpc
from fastapi import FastAPI
from starlette.routing import Route, Router

from sandlot._wire import codes, framing
from sandlot._wire import errors as wire
from sandlot.agent import files, rpc
from sandlot.api import connect
from sandlot.api import errors as api_errors
from sandlot.lifecycle import errors as lifecycle_errors
from sandlot.sdk import exceptions
from sandlot.sdk._core import connect as sdk_connect
from sandlot.sdk._core import errors as sdk_errors
from sandlot.sdk._core import filesystem as sdk_filesystem

GONE = codes.GONE_MESSAGE


def test_every_code_has_one_status_and_it_is_connects() -> None:
    """The status of a unary Connect error, as the e2b SDK's Connect library writes it."""
    assert set(codes.STATUS) == set(codes.Code)
    assert {code.value: status for code, status in codes.STATUS.items()} == {
        code.value: status.code for code, status in _error_to_http_status.items()
    }


def test_a_bare_status_reads_as_the_e2b_sdk_reads_it() -> None:
    for status, code in e2b_client.PLAIN_HTTP_ERROR_CODES.items():
        assert codes.code_of_status(status) == code.value, status
    assert codes.code_of_status(codes.NO_SPACE.status) is codes.Code.RESOURCE_EXHAUSTED
    assert codes.code_of_status(418) is None


def test_the_rest_rows_are_the_e2b_sdks() -> None:
    assert codes.GONE.status == 502 and codes.NO_SPACE.status == 507
    assert isinstance(e2b_envd_api.format_envd_api_exception(502, GONE), e2b.SandboxNotRunningException)
    assert isinstance(e2b_envd_api.format_envd_api_exception(507, "full"), e2b.NotEnoughSpaceException)


# Each error the agent can raise, and what the e2b SDK and the sandlot SDK make of it over Connect
# (the code decides) and over /files (the status decides). The message is the gone-sandbox text,
# which only `Unavailable` is sent with; every parse is of a filesystem call.
E2B, SDK = e2b, exceptions
ROWS = [
    # error                   e2b, Connect                    e2b, /files
    #                         sandlot, Connect            sandlot, /files
    (wire.InvalidArgument,    E2B.InvalidArgumentException,   E2B.InvalidArgumentException,
                              SDK.InvalidArgumentError,   SDK.InvalidArgumentError),
    (wire.FailedPrecondition, E2B.SandboxException,           E2B.InvalidArgumentException,
                              SDK.InvalidArgumentError,   SDK.InvalidArgumentError),
    (wire.NotFound,           E2B.NotFoundException,          E2B.NotFoundException,
                              SDK.PathNotFoundError,      SDK.PathNotFoundError),
    (wire.AlreadyExists,      E2B.SandboxException,           E2B.SandboxException,
                              SDK.AlreadyExistsError,     SDK.AlreadyExistsError),
    (wire.PermissionDenied,   E2B.SandboxException,           E2B.SandboxException,
                              SDK.PermissionDeniedError,  SDK.PermissionDeniedError),
    (wire.ResourceExhausted,  E2B.RateLimitException,         E2B.RateLimitException,
                              SDK.RateLimitedError,       SDK.RateLimitedError),
    (wire.NoSpace,            E2B.RateLimitException,         E2B.NotEnoughSpaceException,
                              SDK.RateLimitedError,       SDK.NotEnoughSpaceError),
    (wire.DeadlineExceeded,   E2B.TimeoutException,           E2B.SandboxException,
                              SDK.TimeoutError,           SDK.TimeoutError),
    (wire.Canceled,           E2B.TimeoutException,           E2B.SandboxException,
                              SDK.TimeoutError,           SDK.TimeoutError),
    (wire.Unavailable,        E2B.SandboxNotRunningException, E2B.SandboxNotRunningException,
                              SDK.SandboxNotRunningError, SDK.SandboxNotRunningError),
    (wire.Unimplemented,      E2B.SandboxException,           E2B.SandboxException,
                              SDK.UnsupportedError,       SDK.UnsupportedError),
    (wire.Internal,           E2B.SandboxException,           E2B.SandboxException,
                              SDK.ServerError,            SDK.ServerError),
]


def test_rows_cover_every_wire_error() -> None:
    assert sorted(row[0].__name__ for row in ROWS) == sorted(set(wire.__all__) - {"WireError"})


async def _connect_answer(error: wire.WireError) -> httpx.Response:
    async def fail(ctx: None, message: dict[str, Any]) -> dict[str, Any]:
        raise error

    app = Router(routes=[Route("/x", connect.endpoint(connect.Kind.UNARY, fail, lambda scope, deadline: None))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client:
        return await client.post("/x", content=b"{}", headers={"content-type": framing.JSON})


def _raised(call: Any, *args: Any, **kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    return info.value


@pytest.mark.parametrize(("error", "e2b_connect", "e2b_files", "sdk_connect_class", "sdk_files_class"), ROWS)
def test_server_answers_and_both_sdks_read_back_one_row(
    error: type[wire.WireError],
    e2b_connect: type[Exception],
    e2b_files: type[Exception],
    sdk_connect_class: type[exceptions.SandlotError],
    sdk_files_class: type[exceptions.SandlotError],
) -> None:
    exc = error(GONE)
    code = error.fault.code

    # Connect: the code, with Connect's status of it.
    answer = asyncio.run(_connect_answer(exc))
    assert (answer.status_code, answer.json()) == (codes.STATUS[code], {"code": code.value, "message": GONE})
    e2b_exc = e2b_rpc.handle_rpc_exception(connect_errors.ConnectError(connect_code.Code(code.value), GONE))
    assert type(e2b_exc) is e2b_connect, e2b_exc
    ours = _raised(sdk_connect.parse_unary, answer.status_code, framing.JSON, answer.content, context="filesystem")
    assert type(ours) is sdk_connect_class

    # /files: the row's status, in the E2B REST shape.
    reply = files._from_error(exc)
    body = json.loads(bytes(reply.body))
    assert (reply.status_code, body) == (error.fault.status, codes.error_body(error.fault.status, GONE))
    assert type(e2b_envd_api.format_envd_api_exception(reply.status_code, body["message"])) is e2b_files
    ours = _raised(sdk_filesystem.check_files_status, reply.status_code, {}, bytes(reply.body))
    assert type(ours) is sdk_files_class


def test_files_answers_that_changed_when_the_tables_became_one() -> None:
    """``/files`` had its own table and answered 500 for the errors it lacked."""
    assert files._from_error(wire.DeadlineExceeded("slow")).status_code == 504
    assert files._from_error(wire.FailedPrecondition("no")).status_code == 400
    assert files._from_error(wire.NoSpace("full")).status_code == 507
    assert files._from_error(wire.Unavailable(GONE)).status_code == 502


def test_transport_failures_keep_their_own_status() -> None:
    exc = wire.InvalidArgument("content-type must be application/json", status=415)
    assert (exc.status, exc.connect_status, exc.code) == (415, 415, codes.Code.INVALID_ARGUMENT)


# The status every route answered each lifecycle error with before the lifecycle lost its
# statuses; the api's table must keep them.
LIFECYCLE = {
    lifecycle_errors.InvalidRequest("bad"): 400,
    lifecycle_errors.SandboxNotFound("sbx"): 404,
    lifecycle_errors.TemplateNotFound("tpl"): 404,
    lifecycle_errors.SnapshotNotFound("snap"): 404,
    lifecycle_errors.Conflict("paused"): 409,
    lifecycle_errors.Overloaded("queue full"): 429,
    lifecycle_errors.RuntimeFailure("runc"): 500,
    lifecycle_errors.NotSupported("no criu"): 501,
    lifecycle_errors.Unavailable("busy", retry_after=7): 503,
    lifecycle_errors.InsufficientStorage("full"): 507,
}


def test_lifecycle_errors_keep_their_statuses() -> None:
    assert set(api_errors.FAULTS) == {type(exc) for exc in LIFECYCLE}
    app = FastAPI()
    api_errors.install(app)
    raised = iter(LIFECYCLE)

    @app.get("/fail")
    async def fail() -> None:
        raise next(raised)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return [await client.get("/fail") for _ in LIFECYCLE]

    for (exc, status), answer in zip(LIFECYCLE.items(), asyncio.run(run()), strict=True):
        assert (answer.status_code, answer.json()) == (status, codes.error_body(status, str(exc)))
        assert answer.headers.get("retry-after") == {429: "1", 503: "7"}.get(status)
        assert isinstance(sdk_errors.error_from_http(answer.status_code, answer.content), exceptions.SandlotError)
    assert not any(hasattr(type(exc), "status") for exc in LIFECYCLE)


def test_every_side_uses_the_one_table() -> None:
    assert connect.errors is wire and connect.framing is framing
    assert files.codes is codes and files.wire is wire
    assert api_errors.codes is codes
    assert rpc.InvalidArgument is wire.InvalidArgument
    assert sdk_errors.codes is codes
    assert sdk_connect.framing is framing and issubclass(sdk_connect.EnvelopeDecoder, framing.Decoder)
    assert sdk_connect.encode_envelope is framing.encode_envelope


async def _stream_end(error: wire.WireError) -> bytes:
    async def fail(ctx: None, message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        raise error

    app = Router(routes=[Route("/s", connect.endpoint(connect.Kind.SERVER_STREAM, fail, lambda scope, deadline: None))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client:
        reply = await client.post(
            "/s", content=framing.encode_envelope({}), headers={"content-type": framing.STREAM_JSON}
        )
        return reply.content


def test_a_stream_ends_with_the_same_code_the_sdk_reads() -> None:
    body = asyncio.run(_stream_end(wire.NotFound("no /x")))
    assert body.endswith(framing.end_stream({"code": "not_found", "message": "no /x"}))
    with pytest.raises(exceptions.PathNotFoundError, match="no /x"):
        list(sdk_connect.iter_messages(sdk_connect.EnvelopeDecoder(), body, context="filesystem"))
