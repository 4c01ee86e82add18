"""Pages of the list routes and their tokens (``X-Next-Token``): the position of the last item
returned.

A token is the item's sort key (a time and an id), base64url-encoded: an item created or removed
between two pages neither repeats nor hides another, and no cursor state is kept on the server.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from sandlot.lifecycle import errors

__all__ = ["MAX_LIMIT", "check_limit", "cut", "decode", "encode", "page"]

MAX_LIMIT = 1000
T = TypeVar("T")
Key = tuple[datetime, str]
"""An item's place in a list: its time and its id."""


def encode(when: datetime, item_id: str) -> str:
    raw = f"{when.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> tuple[datetime, str]:
    """The position a token names; `errors.InvalidRequest` when this server did not make it."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when_text, item_id = raw.split("|", 1)
        when = datetime.fromisoformat(when_text)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, item_id
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidRequest(
            f"nextToken {token!r} is not a token this server gave"
        ) from None


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")


def cut(items: Sequence[T], limit: int, key: Callable[[T], Key]) -> tuple[list[T], str | None]:
    """The first ``limit`` of ``items`` (sorted, and past the previous page), and the token
    of the page after them when there are more."""
    found = list(items[:limit])
    return found, encode(*key(found[-1])) if len(items) > limit else None


def page(
    items: Iterable[T], key: Callable[[T], Key], *, order: str, limit: int, next_token: str | None
) -> tuple[list[T], str | None]:
    """One page of ``items`` in ``order`` of ``key`` (``asc`` or ``desc``) after the position
    ``next_token`` names, and the token of the next page."""
    if order not in ("asc", "desc"):
        raise errors.InvalidRequest(f"order must be 'asc' or 'desc', got {order!r}")
    check_limit(limit)
    after = decode(next_token) if next_token else None
    desc = order == "desc"
    found = sorted(items, key=key, reverse=desc)
    if after is not None:
        found = [s for s in found if (key(s) < after if desc else key(s) > after)]
    return cut(found, limit, key)
