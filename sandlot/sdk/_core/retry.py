"""When the SDK tries a control-plane request again after a 429, and how long it waits first.

A 429 means the server did nothing and asks the client to come back later (the ``/execute``
queue is full, a quota is used up for now); its ``Retry-After`` says when. Honouring it inside
the SDK spares every caller the same loop, but an unbounded loop would turn an overloaded
server into a hung client, so the policy is bounded twice: at most ``retries`` more attempts,
and never a single wait longer than ``max_wait`` seconds. A ``Retry-After`` beyond
``max_wait`` is taken to mean "not soon": the SDK raises at once, and the
:class:`~sandlot.RateLimitedError` carries ``retry_after`` for a caller who wants to wait that
long. Without a ``Retry-After`` the waits grow exponentially from ``backoff``.

Only 429 is retried: other errors (a 503 from ``/execute`` after it already waited for a free
runner, a 413) would fail the same way again. Nothing here sleeps; the I/O layer does.

Example:
    >>> policy = RetryPolicy(retries=3)
    >>> exc = RateLimitedError("429: busy", status=429, retry_after=2)
    >>> policy.delay(0, exc), policy.delay(3, exc)
    (2.0, None)
"""

from __future__ import annotations

import dataclasses

from sandlot.sdk import exceptions

__all__ = ["RetryPolicy"]


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many times a 429 is retried and how long the SDK waits before each retry.

    Attributes:
        retries: Attempts after the first one; 0 never retries.
        max_wait: The longest single wait, in seconds; a longer ``Retry-After`` is not waited.
        backoff: The first wait when the server sent no ``Retry-After`` (doubled each time).

    Example:
        >>> RetryPolicy(retries=0).delay(0, RateLimitedError("x", status=429)) is None
        True
    """

    retries: int = 3
    max_wait: float = 10.0
    backoff: float = 0.5

    def delay(self, attempt: int, error: exceptions.SandlotError) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to raise it now.

        Args:
            attempt: How many retries were already made for this request (0 after the first try).
            error: What the last attempt raised.
        """
        if not isinstance(error, exceptions.RateLimitedError) or error.status != 429:
            return None
        if attempt >= self.retries:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_wait else None
        return min(self.backoff * 2.0**attempt, self.max_wait)
