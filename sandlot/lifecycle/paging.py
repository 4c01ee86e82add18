"""Page tokens of the list routes (``X-Next-Token``): the position of the last item returned.

A token is the item's sort key (a time and an id), base64url-encoded: an item created or removed
between two pages neither repeats nor hides another, and no cursor state is kept on the server.
"""

from __future__ import annotations

import base64
from datetime import datetime

from sandlot.lifecycle import errors

__all__ = ["decode", "encode"]


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
