"""Control-plane requests and answers (the E2B REST shape), built and parsed without I/O.

Each builder returns a :class:`Request`; the I/O layer sends it and hands the status, headers
and body to the matching ``parse_*`` function, which returns typed results or raises through
:mod:`sandlot.sdk._core.errors`. The SDK uses the newer routes (``/v2/sandboxes``,
``/v2/sandboxes/{id}/connect``), as e2b 2.63 does; docs/e2b-wire.md §2 has every field.

Example:
    >>> request = create_sandbox(template="base", timeout=60, metadata={"job": "1"})
    >>> request.method, request.path, request.json["timeout"]
    ('POST', '/v2/sandboxes', 60)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from sandlot.sdk import exceptions
from sandlot.sdk._core import errors, models

__all__ = [
    "Request",
    "SandboxHandle",
    "connect_sandbox",
    "create_sandbox",
    "encode_metadata_filter",
    "get_metrics",
    "get_sandbox",
    "kill_sandbox",
    "list_sandboxes",
    "parse_handle",
    "parse_info",
    "parse_list",
    "parse_metrics",
    "raise_for_status",
    "set_timeout",
]

DEFAULT_TEMPLATE = "base"


@dataclasses.dataclass(frozen=True)
class Request:
    """One HTTP request to send: a method, a path below the API URL, and its parts.

    Example:
        >>> kill_sandbox("abc")
        Request(method='DELETE', path='/sandboxes/abc', params=None, json=None)
    """

    method: str
    path: str
    params: dict[str, str] | None = None
    json: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class SandboxHandle:
    """What create and connect return: enough to reach the sandbox plane.

    Example:
        >>> parse_handle(201, {}, b'{"sandboxID":"s1","templateID":"base","clientID":"c","envdVersion":"0.6.4"}')
        SandboxHandle(sandbox_id='s1', template_id='base', envd_version='0.6.4', access_token=None, domain=None)
    """

    sandbox_id: str
    template_id: str
    envd_version: str
    access_token: str | None = None
    domain: str | None = None


def _segment(value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise exceptions.InvalidArgumentError(f"invalid sandbox id {value!r}")
    return urllib.parse.quote(value, safe="")


def create_sandbox(
    *,
    template: str | None = None,
    timeout: int | None = None,
    metadata: Mapping[str, str] | None = None,
    envs: Mapping[str, str] | None = None,
    secure: bool | None = None,
    allow_internet_access: bool | None = None,
    auto_pause: bool | None = None,
) -> Request:
    """``POST /v2/sandboxes``: keys the caller left unset are omitted (the server's defaults apply).

    Example:
        >>> create_sandbox(envs={"A": "1"}).json
        {'templateID': 'base', 'metadata': {}, 'envVars': {'A': '1'}}
    """
    body: dict[str, Any] = {
        "templateID": template or DEFAULT_TEMPLATE,
        "metadata": dict(metadata or {}),
        "envVars": dict(envs or {}),
    }
    if timeout is not None:
        body["timeout"] = _seconds(timeout)
    if secure is not None:
        body["secure"] = secure
    if allow_internet_access is not None:
        body["allow_internet_access"] = allow_internet_access  # snake_case on the wire, as e2b sends it
    if auto_pause is not None:
        body["autoPause"] = auto_pause
    return Request("POST", "/v2/sandboxes", json=body)


def connect_sandbox(sandbox_id: str, *, timeout: int | None = None) -> Request:
    """``POST /v2/sandboxes/{id}/connect``; a connect never shortens the sandbox's timeout.

    Example:
        >>> connect_sandbox("s1").json
        {}
    """
    body = {} if timeout is None else {"timeout": _seconds(timeout)}
    return Request("POST", f"/v2/sandboxes/{_segment(sandbox_id)}/connect", json=body)


def get_sandbox(sandbox_id: str) -> Request:
    """``GET /sandboxes/{id}``.

    Example:
        >>> get_sandbox("s1").path
        '/sandboxes/s1'
    """
    return Request("GET", f"/sandboxes/{_segment(sandbox_id)}")


def kill_sandbox(sandbox_id: str) -> Request:
    """``DELETE /sandboxes/{id}``: 204 killed, 404 not found (``kill()`` returns False).

    Example:
        >>> kill_sandbox("s1").method
        'DELETE'
    """
    return Request("DELETE", f"/sandboxes/{_segment(sandbox_id)}")


def set_timeout(sandbox_id: str, timeout: int) -> Request:
    """``POST /sandboxes/{id}/timeout``: the sandbox now ends ``timeout`` seconds from now.

    Example:
        >>> set_timeout("s1", 30).json
        {'timeout': 30}
    """
    return Request("POST", f"/sandboxes/{_segment(sandbox_id)}/timeout", json={"timeout": _seconds(timeout)})


def get_metrics(
    sandbox_id: str, *, start: datetime.datetime | None = None, end: datetime.datetime | None = None
) -> Request:
    """``GET /sandboxes/{id}/metrics`` with optional Unix-second bounds.

    Example:
        >>> get_metrics("s1", start=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)).params
        {'start': '1735689600'}
    """
    params = {}
    if start is not None:
        params["start"] = str(int(start.timestamp()))
    if end is not None:
        params["end"] = str(int(end.timestamp()))
    return Request("GET", f"/sandboxes/{_segment(sandbox_id)}/metrics", params=params or None)


def list_sandboxes(
    *,
    metadata: Mapping[str, str] | None = None,
    state: Sequence[str] | str | None = None,
    template: str | None = None,
    started_after: datetime.datetime | None = None,
    order: str | None = None,
    limit: int | None = None,
    next_token: str | None = None,
) -> Request:
    """``GET /v2/sandboxes``; every filter is sent only when given.

    Example:
        >>> list_sandboxes(metadata={"k y": "v&1"}, state="running").params
        {'metadata': 'k%2520y=v%25261', 'state': 'running'}
    """
    params: dict[str, str] = {}
    if metadata:
        params["metadata"] = encode_metadata_filter(metadata)
    if state:
        params["state"] = state if isinstance(state, str) else ",".join(state)
    if template:
        params["template"] = template
    if started_after is not None:
        params["startedAfter"] = started_after.astimezone().isoformat()
    if order:
        if order not in ("asc", "desc"):
            raise exceptions.InvalidArgumentError(f"order must be 'asc' or 'desc', not {order!r}")
        params["order"] = order
    if limit is not None:
        params["limit"] = str(limit)
    if next_token:
        params["nextToken"] = next_token
    return Request("GET", "/v2/sandboxes", params=params or None)


def encode_metadata_filter(metadata: Mapping[str, str]) -> str:
    """The ``metadata`` query value as e2b writes it: a query string of percent-encoded pairs.

    The HTTP layer encodes the whole value once more, which gives the three layers of §2.6.

    Example:
        >>> encode_metadata_filter({"k y": "v&1"})
        'k%2520y=v%25261'
    """
    pairs = {urllib.parse.quote(k, safe=""): urllib.parse.quote(v, safe="") for k, v in metadata.items()}
    return urllib.parse.urlencode(pairs)


# ----------------------------------------------------------------------------------- answers


def raise_for_status(status: int, headers: Mapping[str, str], body: bytes, *, sandbox: bool = True) -> None:
    """Raise the mapped error for a control-plane answer of ``status`` ≥ 400.

    Example:
        >>> raise_for_status(401, {}, b'{"code":401,"message":"invalid API key"}')
        Traceback (most recent call last):
        sandlot.sdk.exceptions.AuthenticationError: 401: invalid API key
    """
    if status >= 400:
        raise errors.error_from_http(status, body, headers, context="sandbox" if sandbox else None)


def parse_handle(status: int, headers: Mapping[str, str], body: bytes) -> SandboxHandle:
    """The answer to create or connect (201 created or resumed, 200 running).

    Example:
        >>> parse_handle(404, {}, b'{"code":404,"message":"sandbox s1 not found"}')
        Traceback (most recent call last):
        sandlot.sdk.exceptions.SandboxNotFoundError: 404: sandbox s1 not found
    """
    raise_for_status(status, headers, body)
    data = _json_object(body)
    try:
        return SandboxHandle(
            sandbox_id=str(data["sandboxID"]),
            template_id=str(data.get("templateID", "")),
            envd_version=str(data.get("envdVersion", "")),
            access_token=data.get("envdAccessToken") or None,
            domain=data.get("domain") or None,
        )
    except KeyError as exc:
        raise exceptions.ProtocolError(f"sandbox answer lacks {exc}") from None


def parse_info(status: int, headers: Mapping[str, str], body: bytes) -> models.SandboxInfo:
    """The answer to ``GET /sandboxes/{id}``.

    Example:
        >>> parse_info(200, {}, SANDBOX_DETAIL_JSON).state
        'running'
    """
    raise_for_status(status, headers, body)
    return _info(_json_object(body))


def parse_list(status: int, headers: Mapping[str, str], body: bytes) -> tuple[list[models.SandboxInfo], str | None]:
    """The answer to ``GET /v2/sandboxes``: one page, and the token of the next page (or None).

    Example:
        >>> parse_list(200, {"x-next-token": ""}, b"[]")
        ([], None)
    """
    raise_for_status(status, headers, body, sandbox=False)
    items = _json(body)
    if not isinstance(items, list):
        raise exceptions.ProtocolError("sandbox list is not a JSON array")
    token = {k.lower(): v for k, v in headers.items()}.get("x-next-token") or None
    return [_info(item) for item in items], token


def parse_metrics(status: int, headers: Mapping[str, str], body: bytes) -> list[models.SandboxMetrics]:
    """The answer to ``GET /sandboxes/{id}/metrics``, oldest sample first.

    Example:
        >>> parse_metrics(200, {}, b"[]")
        []
    """
    raise_for_status(status, headers, body)
    items = _json(body)
    if not isinstance(items, list):
        raise exceptions.ProtocolError("metrics answer is not a JSON array")
    try:
        return [
            models.SandboxMetrics(
                timestamp=parse_time(item.get("timestamp")) or _unix(item["timestampUnix"]),
                cpu_count=int(item["cpuCount"]),
                cpu_used_pct=float(item["cpuUsedPct"]),
                mem_used=int(item["memUsed"]),
                mem_total=int(item["memTotal"]),
                disk_used=int(item["diskUsed"]),
                disk_total=int(item["diskTotal"]),
                mem_cache=int(item.get("memCache") or 0),
            )
            for item in items
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise exceptions.ProtocolError(f"malformed metrics answer: {exc!r}") from None


def parse_kill(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    """The answer to ``DELETE /sandboxes/{id}``: True if killed, False if there was no such sandbox.

    Example:
        >>> parse_kill(204, {}, b""), parse_kill(404, {}, b'{"code":404,"message":"nope"}')
        (True, False)
    """
    if status == 404:
        return False
    raise_for_status(status, headers, body)
    return True


def parse_empty(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """An answer whose body does not matter (``204`` to set_timeout).

    Example:
        >>> parse_empty(204, {}, b"")
    """
    raise_for_status(status, headers, body)


def _info(data: Any) -> models.SandboxInfo:
    if not isinstance(data, dict):
        raise exceptions.ProtocolError("sandbox entry is not a JSON object")
    try:
        return models.SandboxInfo(
            sandbox_id=str(data["sandboxID"]),
            template_id=str(data["templateID"]),
            state=str(data.get("state", "running")),
            started_at=parse_time(data["startedAt"]),  # type: ignore[arg-type]
            end_at=parse_time(data["endAt"]),  # type: ignore[arg-type]
            metadata=dict(data.get("metadata") or {}),
            cpu_count=int(data.get("cpuCount") or 0),
            memory_mb=int(data.get("memoryMB") or 0),
            disk_size_mb=int(data.get("diskSizeMB") or 0),
            envd_version=str(data.get("envdVersion") or ""),
            name=data.get("alias"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise exceptions.ProtocolError(f"malformed sandbox entry: {exc!r}") from None


def parse_time(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time (``Z`` or offset, up to nanoseconds) as an aware datetime; falsy → None."""
    if not value:
        return None
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go and others send nanoseconds; fromisoformat takes at most microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    moment = datetime.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _unix(value: Any) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(value), datetime.UTC)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise exceptions.ProtocolError(f"invalid JSON from the control plane: {exc}") from None


def _json_object(body: bytes) -> dict[str, Any]:
    value = _json(body)
    if not isinstance(value, dict):
        raise exceptions.ProtocolError("expected a JSON object from the control plane")
    return value


def _seconds(value: float) -> int:
    if value < 0:
        raise exceptions.InvalidArgumentError(f"a timeout cannot be negative: {value}")
    return int(value)
