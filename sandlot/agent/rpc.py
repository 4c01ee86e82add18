"""What an agent service receives with each call, and the errors it answers with.

The services (`sandlot.agent.process`, `sandlot.agent.filesystem`) know nothing of HTTP: they
take a `Call` and a decoded JSON message (proto3 JSON, a ``dict``) and return or yield
messages. They raise the errors below; the transport (`sandlot.api.connect`) turns each into
its Connect code through one table, so the services never name a wire code.

* AgentError
  + InvalidArgument       a malformed message, a path that is not a directory...
  + NotFound              no such file, process or watcher
  + AlreadyExists
  + PermissionDenied
  + FailedPrecondition
  + ResourceExhausted     too large, too many, disk full
  + DeadlineExceeded
  + Unavailable           the sandbox stopped answering
  + Unimplemented
  + Internal
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from sandlot.runtime import target as targets

__all__ = [
    "AgentError",
    "AlreadyExists",
    "Call",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "Unimplemented",
    "get_bool",
    "get_bytes",
    "get_int",
    "get_message",
    "get_str",
    "get_str_list",
    "get_str_map",
]


class AgentError(Exception):
    """Root of the errors an agent service answers a call with."""


class InvalidArgument(AgentError):
    pass


class NotFound(AgentError):
    pass


class AlreadyExists(AgentError):
    pass


class PermissionDenied(AgentError):
    pass


class FailedPrecondition(AgentError):
    pass


class ResourceExhausted(AgentError):
    pass


class DeadlineExceeded(AgentError):
    pass


class Unavailable(AgentError):
    pass


class Unimplemented(AgentError):
    pass


class Internal(AgentError):
    pass


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


def get_message(message: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = _raw(message, name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be an object")
    return value


def get_str(message: Mapping[str, Any], name: str) -> str | None:
    value = _raw(message, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    if "\0" in value:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    return value


def get_bool(message: Mapping[str, Any], name: str) -> bool | None:
    value = _raw(message, name)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidArgument(f"{name} must be true or false")


def get_int(message: Mapping[str, Any], name: str, *, low: int = 0, high: int = 2**32 - 1) -> int | None:
    value = _raw(message, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument(f"{name} must be an integer")
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer") from None
    if not low <= number <= high:
        raise InvalidArgument(f"{name} must be between {low} and {high}")
    return number


def get_bytes(message: Mapping[str, Any], name: str) -> bytes | None:
    value = _raw(message, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be base64 text")
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{name} is not valid base64") from None


def get_str_map(message: Mapping[str, Any], name: str) -> dict[str, str]:
    value = _raw(message, name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"{name} must be an object of strings")
    for key, item in value.items():
        if "\0" in key or "\0" in item:
            raise InvalidArgument(f"{name} must not contain NUL characters")
    return dict(value)


def get_str_list(message: Mapping[str, Any], name: str) -> list[str]:
    value = _raw(message, name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{name} must be a list of strings")
    if any("\0" in v for v in value):
        raise InvalidArgument(f"{name} must not contain NUL characters")
    return list(value)
