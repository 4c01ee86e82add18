"""The one error table, read in both directions."""

from __future__ import annotations

import httpx
import pytest

from sandlot.sdk import exceptions
from sandlot.sdk._core import errors


def test_every_connect_code_has_a_class_and_round_trips() -> None:
    for code, cls in errors.CODES.items():
        exc = errors.error_from_connect(code, "m")
        assert isinstance(exc, cls)
        assert errors.CODES[errors.code_for(exc)] is cls


def test_reverse_direction_picks_canonical_codes_and_statuses() -> None:
    assert errors.code_for(exceptions.TimeoutError("x")) == "deadline_exceeded"
    assert errors.status_for(exceptions.TimeoutError("x")) == 504
    assert errors.code_for(exceptions.ServerError("x")) == "internal"
    assert errors.code_for(exceptions.PathNotFoundError("x")) == "not_found"
    assert errors.status_for(exceptions.SandboxNotFoundError("x")) == 404
    assert errors.status_for(exceptions.SandboxNotRunningError("The sandbox was not found")) == 502
    assert errors.code_for(exceptions.SandboxNotRunningError("x")) == "unavailable"
    assert errors.status_for(exceptions.NotEnoughSpaceError("x")) == 507
    assert errors.code_for(ValueError("not ours")) == "unknown"


def test_gone_sandbox_is_recognised_by_its_literal_text() -> None:
    assert isinstance(
        errors.error_from_connect("unavailable", "The sandbox was not found"), exceptions.SandboxNotRunningError
    )
    assert type(errors.error_from_connect("unavailable", "port is not open")) is exceptions.UnavailableError


def test_http_errors_keep_message_status_and_retry_after() -> None:
    exc = errors.error_from_http(429, b'{"code":429,"message":"quota"}', {"Retry-After": "3"})
    assert isinstance(exc, exceptions.RateLimitedError)
    assert exc.retry_after == 3.0
    assert exc.status == 429
    assert exc.message == "429: quota"
    exc = errors.error_from_http(404, b'{"code":404,"message":"sandbox x not found"}', context="sandbox")
    assert type(exc) is exceptions.SandboxNotFoundError
    assert isinstance(errors.error_from_http(507, b"full"), exceptions.NotEnoughSpaceError)
    assert isinstance(errors.error_from_http(422, b'{"detail":[]}'), exceptions.InvalidArgumentError)


def test_timeout_error_is_also_the_builtin() -> None:
    with pytest.raises(TimeoutError):
        raise errors.error_from_connect("deadline_exceeded", "late")


def test_transport_failures() -> None:
    assert isinstance(errors.error_from_transport(httpx.ConnectError("refused"), "u"), exceptions.UnavailableError)
    assert isinstance(errors.error_from_transport(httpx.ReadTimeout("slow"), "u"), exceptions.TimeoutError)
    assert isinstance(errors.error_from_transport(httpx.RemoteProtocolError("eof"), "u"), exceptions.ProtocolError)


def test_tree_has_one_root() -> None:
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.SandlotError)
