"""What an agent service receives with each call, and the readers of its proto3 JSON message.

The services (`sandlot.agent.process`, `sandlot.agent.filesystem`) know nothing of HTTP: they
take a `Call` and a decoded JSON message (proto3 JSON, a ``dict``) and return or yield
messages. They raise the errors of `sandlot._wire.errors`; the transports
(`sandlot.api.connect`, `sandlot.agent.files`) answer each with its row of the one table
(`sandlot._wire.codes`), so the services never name a wire code or status. The readers below
raise `InvalidArgument` naming the field that has the wrong shape.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from sandlot._wire.errors import InvalidArgument
from sandlot.runtime import target as targets

__all__ = [
    "Call",
    "get_bool",
    "get_bytes",
    "get_int",
    "get_message",
    "get_str",
    "get_str_list",
    "get_str_map",
]


@dataclasses.dataclass(frozen=True)
class Call:
    """Who calls, on which sandbox, until when."""

    target: targets.SandboxTarget
    user: str
    """The sandbox user the call acts as (from ``Authorization: Basic``, else the default)."""
    deadline: float | None = None
    """The event loop time at which the caller stops waiting, or None."""


# -- reading proto3 JSON -------------------------------------------------------------------------
# Proto3 JSON accepts both the lowerCamelCase name and the original field name, numbers as
# strings, and bytes in standard or URL-safe base64. These read one field and raise
# InvalidArgument naming it when it has the wrong shape.


def _raw(message: Mapping[str, Any], name: str) -> Any:
    if name in message:
        return message[name]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return message.get(snake)


def _typed(message: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """The field ``name``, None if unset, or InvalidArgument saying it must be ``what``."""
    value = _raw(message, name)
    # isinstance(True, int) holds, but JSON's true is no number: only get_bool takes a bool.
    if value is not None and (isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind)):
        raise InvalidArgument(f"{name} must be {what}")
    return value


def _no_nul(name: str, texts: Iterable[str]) -> None:
    if any("\0" in text for text in texts):
        raise InvalidArgument(f"{name} must not contain NUL characters")


def get_message(message: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = _typed(message, name, dict, "an object")
    return value


def get_str(message: Mapping[str, Any], name: str) -> str | None:
    value: str | None = _typed(message, name, str, "a string")
    if value is not None:
        _no_nul(name, [value])
    return value


def get_bool(message: Mapping[str, Any], name: str) -> bool | None:
    value: bool | None = _typed(message, name, bool, "true or false")
    return value


def get_int(message: Mapping[str, Any], name: str, *, low: int = 0, high: int = 2**32 - 1) -> int | None:
    value = _typed(message, name, (int, str), "an integer")
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer") from None
    if not low <= number <= high:
        raise InvalidArgument(f"{name} must be between {low} and {high}")
    return number


def get_bytes(message: Mapping[str, Any], name: str) -> bytes | None:
    value = _typed(message, name, str, "base64 text")
    if value is None:
        return None
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{name} is not valid base64") from None


def get_str_map(message: Mapping[str, Any], name: str) -> dict[str, str]:
    value = _typed(message, name, dict, "an object of strings") or {}
    if not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"{name} must be an object of strings")
    _no_nul(name, [*value, *value.values()])
    return dict(value)


def get_str_list(message: Mapping[str, Any], name: str) -> list[str]:
    value = _typed(message, name, list, "a list of strings") or []
    if not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{name} must be a list of strings")
    _no_nul(name, value)
    return list(value)
