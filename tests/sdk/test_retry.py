"""The 429 retry policy: bounded in attempts and in each wait, honouring ``Retry-After``."""

from __future__ import annotations

import email.utils
import time

from sandlot.sdk import exceptions
from sandlot.sdk._core import errors
from sandlot.sdk._core.retry import RetryPolicy


def _limited(retry_after: str | None = None, status: int = 429) -> exceptions.SandlotError:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return errors.error_from_http(status, b'{"code":429,"message":"queue full"}', headers)


def test_retry_after_is_waited_exactly_and_attempts_are_bounded() -> None:
    policy = RetryPolicy(retries=2)
    error = _limited("1.5")
    assert [policy.delay(n, error) for n in range(4)] == [1.5, 1.5, None, None]
    assert RetryPolicy(retries=0).delay(0, error) is None


def test_a_retry_after_beyond_the_longest_wait_raises_at_once() -> None:
    error = _limited("120")
    assert RetryPolicy(max_wait=10).delay(0, error) is None
    assert isinstance(error, exceptions.RateLimitedError) and error.retry_after == 120.0  # for the caller


def test_without_retry_after_waits_double_up_to_the_cap() -> None:
    policy = RetryPolicy(retries=6, max_wait=3, backoff=0.5)
    assert [policy.delay(n, _limited()) for n in range(6)] == [0.5, 1.0, 2.0, 3, 3, 3]


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    error = _limited(when)
    assert isinstance(error, exceptions.RateLimitedError)
    assert error.retry_after is not None and 3 < error.retry_after <= 5
    past = _limited(email.utils.formatdate(time.time() - 60, usegmt=True))
    assert isinstance(past, exceptions.RateLimitedError) and past.retry_after == 0.0
    assert isinstance(_limited("soon"), exceptions.RateLimitedError)  # unreadable: no retry_after
    assert _limited("soon").retry_after is None  # type: ignore[attr-defined]


def test_only_429_is_retried() -> None:
    policy = RetryPolicy()
    no_runner = errors.error_from_http(503, b'{"code":503,"message":"no runner"}', {"Retry-After": "1"})
    assert policy.delay(0, no_runner) is None
    assert policy.delay(0, errors.error_from_http(413, b"too large")) is None  # resource_exhausted, but not 429
    assert policy.delay(0, exceptions.ServerError("boom")) is None
