"""Control-plane requests and answers (the E2B REST shape), built and parsed without I/O.

Each builder returns a :class:`Request`; the I/O layer sends it and hands the status, headers
and body to the matching ``parse_*`` function, which returns typed results or raises through
:mod:`sandlot.sdk._core.errors`. The SDK uses the newer routes (``/v2/sandboxes``,
``/v2/sandboxes/{id}/connect``), as e2b 2.63 does; docs/e2b-wire.md §2 has every field.

It is longer than the ~600 lines a module aims for because it is one table in code: a builder
and a parser for each of the control plane's routes, side by side and free of I/O, so that a
route's request and its answer are read in one place; split by route, the shared parsing of
sandboxes, snapshots and pages would have to live in a third module anyway.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, TypeVar, Unpack

from sandlot.sdk import exceptions
from sandlot.sdk._core import errors, models

__all__ = [
    "Request",
    "SandboxHandle",
    "SandboxOptions",
    "check_keywords",
    "connect_sandbox",
    "create_sandbox",
    "create_snapshot",
    "decode_json",
    "decode_json_object",
    "delete_snapshot",
    "encode_metadata_filter",
    "fork_sandbox",
    "get_metrics",
    "get_sandbox",
    "kill_sandbox",
    "list_sandboxes",
    "list_snapshots",
    "parse_created",
    "parse_delete_snapshot",
    "parse_fork",
    "parse_handle",
    "parse_info",
    "parse_list",
    "parse_metrics",
    "parse_pause",
    "parse_resume",
    "parse_snapshot",
    "parse_snapshot_list",
    "pause_sandbox",
    "raise_for_status",
    "restart_sandbox",
    "resume_sandbox",
    "set_timeout",
]

DEFAULT_TEMPLATE = "base"
T = TypeVar("T")


class SandboxOptions(TypedDict, total=False):
    """What a new sandbox is given: the keyword arguments of ``create`` after the template.

    ``AsyncSandbox.create`` and ``Sandbox.create`` document each one; a key left out is left
    out of the request too, so the server's default applies.
    """

    timeout: int | None
    metadata: Mapping[str, str] | None
    envs: Mapping[str, str] | None
    secure: bool | None
    allow_internet_access: bool | None
    auto_pause: bool | None
    auto_resume: bool | None
    idle_timeout: int | None


def check_keywords(options: Mapping[str, object], allowed: Any, caller: str) -> None:
    """Refuse a keyword ``allowed`` (a TypedDict) does not have, as Python does for a signature.

    Example:
        >>> check_keywords({"timout": 5}, SandboxOptions, "create")
        Traceback (most recent call last):
        TypeError: create() got an unexpected keyword argument 'timout'
    """
    unknown = sorted(options.keys() - allowed.__optional_keys__ - allowed.__required_keys__)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")


@dataclasses.dataclass(frozen=True)
class Request:
    """One HTTP request to send: a method, a path below the API URL, and its parts.

    ``timeout`` is for requests that legitimately take long (an ``/execute`` that may run for
    its whole time limit): the I/O layer waits at least that many seconds for the answer, even
    when the connection's ``request_timeout`` is shorter.

    Example:
        >>> kill_sandbox("abc")
        Request(method='DELETE', path='/sandboxes/abc', params=None, json=None, timeout=None)
    """

    method: str
    path: str
    params: dict[str, str] | None = None
    json: dict[str, Any] | None = None
    timeout: float | None = None


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


def create_sandbox(*, template: str | None = None, **options: Unpack[SandboxOptions]) -> Request:
    """``POST /v2/sandboxes``: keys the caller left unset are omitted (the server's defaults apply).

    ``template`` may also name a snapshot (``name`` for its newest version, or ``name:tag``).
    ``auto_resume`` goes out as e2b sends ``lifecycle.auto_resume`` (``{"enabled": bool}``);
    ``idle_timeout`` is a sandlot extension (0 turns it off).

    Example:
        >>> create_sandbox(envs={"A": "1"}).json
        {'templateID': 'base', 'metadata': {}, 'envVars': {'A': '1'}}
        >>> create_sandbox(auto_resume=True, idle_timeout=60).json["autoResume"]
        {'enabled': True}
    """
    check_keywords(options, SandboxOptions, "create")
    body: dict[str, Any] = {
        "templateID": template or DEFAULT_TEMPLATE,
        "metadata": dict(options.get("metadata") or {}),
        "envVars": dict(options.get("envs") or {}),
    }
    if (timeout := options.get("timeout")) is not None:
        body["timeout"] = _seconds(timeout)
    if (secure := options.get("secure")) is not None:
        body["secure"] = secure
    if (internet := options.get("allow_internet_access")) is not None:
        body["allow_internet_access"] = internet  # snake_case on the wire, as e2b sends it
    if (auto_pause := options.get("auto_pause")) is not None:
        body["autoPause"] = auto_pause
    if (auto_resume := options.get("auto_resume")) is not None:
        body["autoResume"] = {"enabled": auto_resume}
    if (idle_timeout := options.get("idle_timeout")) is not None:
        body["idleTimeout"] = _seconds(idle_timeout)
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


def pause_sandbox(sandbox_id: str) -> Request:
    """``POST /sandboxes/{id}/pause``: 204 paused (memory kept), 409 already paused.

    Example:
        >>> pause_sandbox("s1").path
        '/sandboxes/s1/pause'
    """
    return Request("POST", f"/sandboxes/{_segment(sandbox_id)}/pause")


def resume_sandbox(sandbox_id: str, *, timeout: int | None = None) -> Request:
    """``POST /sandboxes/{id}/resume``: 201 resumed, 409 it is running.

    Example:
        >>> resume_sandbox("s1", timeout=60).json
        {'timeout': 60}
    """
    body = {} if timeout is None else {"timeout": _seconds(timeout)}
    return Request("POST", f"/sandboxes/{_segment(sandbox_id)}/resume", json=body)


def fork_sandbox(sandbox_id: str, *, count: int = 1, timeout: int | None = None) -> Request:
    """``POST /sandboxes/{id}/fork``: ``count`` copies of a running sandbox, memory and files.

    Example:
        >>> fork_sandbox("s1", count=3).json
        {'count': 3}
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise exceptions.InvalidArgumentError(f"count must be a whole number of copies ≥ 1, not {count!r}")
    body: dict[str, Any] = {"count": count}
    if timeout is not None:
        body["timeout"] = _seconds(timeout)
    return Request("POST", f"/sandboxes/{_segment(sandbox_id)}/fork", json=body)


def restart_sandbox(sandbox_id: str, *, timeout: int | None = None) -> Request:
    """``POST /sandboxes/{id}/restart``: every process ends, the sandbox boots clean on its files.

    Example:
        >>> restart_sandbox("s1").json
        {}
    """
    body = {} if timeout is None else {"timeout": _seconds(timeout)}
    return Request("POST", f"/sandboxes/{_segment(sandbox_id)}/restart", json=body)


def create_snapshot(sandbox_id: str, *, name: str | None = None, memory: bool = True) -> Request:
    """``POST /sandboxes/{id}/snapshots``: 201 with the snapshot; the source goes on running.

    Example:
        >>> create_snapshot("s1", name="warm").json
        {'memory': True, 'name': 'warm'}
    """
    body: dict[str, Any] = {"memory": bool(memory)}
    if name is not None:
        if not name or "/" in name:
            raise exceptions.InvalidArgumentError(f"invalid snapshot name {name!r}")
        body["name"] = name
    return Request("POST", f"/sandboxes/{_segment(sandbox_id)}/snapshots", json=body)


def list_snapshots(
    *,
    sandbox_id: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    next_token: str | None = None,
) -> Request:
    """``GET /snapshots``; pages by ``X-Next-Token`` as the sandbox list does.

    Example:
        >>> list_snapshots(sandbox_id="s1", limit=10).params
        {'sandboxID': 's1', 'limit': '10'}
    """
    params: dict[str, str] = {}
    if sandbox_id:
        params["sandboxID"] = sandbox_id
    if name:
        params["name"] = name
    return _page_request("/snapshots", params, limit, next_token)


def delete_snapshot(snapshot_id: str) -> Request:
    """``DELETE /templates/{snapshotID}``: ``name:tag`` deletes that version, ``name`` every one.

    The id is percent-encoded as one path segment, as e2b does (``a:v1`` → ``a%3Av1``).

    Example:
        >>> delete_snapshot("warm:v1").path
        '/templates/warm%3Av1'
    """
    if not snapshot_id or snapshot_id in (".", ".."):
        raise exceptions.InvalidArgumentError(f"invalid snapshot id {snapshot_id!r}")
    return Request("DELETE", f"/templates/{urllib.parse.quote(snapshot_id, safe='')}")


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
    return _page_request("/v2/sandboxes", params, limit, next_token)


def _page_request(path: str, params: dict[str, str], limit: int | None, next_token: str | None) -> Request:
    """``GET path``: one page of a list, its filters ``params`` then the paging parameters."""
    if limit is not None:
        params["limit"] = str(limit)
    if next_token:
        params["nextToken"] = next_token
    return Request("GET", path, params=params or None)


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


def raise_for_status(
    status: int, headers: Mapping[str, str], body: bytes, *, sandbox: bool = True, context: str | None = None
) -> None:
    """Raise the mapped error for a control-plane answer of ``status`` ≥ 400.

    A 404 is a :class:`SandboxNotFoundError` when the request named a sandbox (``sandbox``),
    or the narrower error ``context`` picks (``"template"`` for a create).

    Example:
        >>> raise_for_status(401, {}, b'{"code":401,"message":"invalid API key"}')
        Traceback (most recent call last):
        sandlot.sdk.exceptions.AuthenticationError: 401: invalid API key
    """
    if status >= 400:
        raise errors.error_from_http(status, body, headers, context=context or ("sandbox" if sandbox else None))


def parse_handle(status: int, headers: Mapping[str, str], body: bytes) -> SandboxHandle:
    """The answer to create or connect (201 created or resumed, 200 running).

    Example:
        >>> parse_handle(404, {}, b'{"code":404,"message":"sandbox s1 not found"}')
        Traceback (most recent call last):
        sandlot.sdk.exceptions.SandboxNotFoundError: 404: sandbox s1 not found
    """
    raise_for_status(status, headers, body)
    return _handle(decode_json_object(body))


def _handle(data: dict[str, Any]) -> SandboxHandle:
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
    return _info(decode_json_object(body))


def parse_list(status: int, headers: Mapping[str, str], body: bytes) -> tuple[list[models.SandboxInfo], str | None]:
    """The answer to ``GET /v2/sandboxes``: one page, and the token of the next page (or None).

    Example:
        >>> parse_list(200, {"x-next-token": ""}, b"[]")
        ([], None)
    """
    return _page(status, headers, body, "sandbox list", _info)


def parse_metrics(status: int, headers: Mapping[str, str], body: bytes) -> list[models.SandboxMetrics]:
    """The answer to ``GET /sandboxes/{id}/metrics``, oldest sample first.

    Example:
        >>> parse_metrics(200, {}, b"[]")
        []
    """
    raise_for_status(status, headers, body)
    items = decode_json(body)
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
    return _done_unless(404, status, headers, body)


def parse_pause(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    """The answer to pause: True if it paused now, False if it was already paused (409).

    Example:
        >>> parse_pause(204, {}, b""), parse_pause(409, {}, b'{"code":409,"message":"paused"}')
        (True, False)
    """
    return _done_unless(409, status, headers, body)


def parse_created(status: int, headers: Mapping[str, str], body: bytes) -> SandboxHandle:
    """The answer to create: a 404 means the template (or snapshot) is unknown, not a sandbox.

    Example:
        >>> parse_created(404, {}, b'{"code":404,"message":"snapshot warm:v9 not found"}')
        Traceback (most recent call last):
        sandlot.sdk.exceptions.TemplateNotFoundError: 404: snapshot warm:v9 not found
    """
    raise_for_status(status, headers, body, context="template")
    return _handle(decode_json_object(body))


def parse_resume(status: int, headers: Mapping[str, str], body: bytes) -> SandboxHandle | None:
    """The answer to resume: the sandbox's handle, or None if it was running already (409).

    Example:
        >>> parse_resume(409, {}, b'{"code":409,"message":"running"}') is None
        True
    """
    if status == 409:
        return None
    return parse_handle(status, headers, body)


def parse_fork(
    status: int, headers: Mapping[str, str], body: bytes
) -> list[SandboxHandle | exceptions.SandlotError]:
    """The answer to fork: one handle per copy, or the error of a copy that was not made.

    sandlot makes every copy or none, but the wire allows ``{"error": ...}`` items (E2B sends
    them), so the caller decides what to do with a partial answer.

    Example:
        >>> parse_fork(201, {}, b'[{"error":{"code":429,"message":"too many"}}]')
        [RateLimitedError('429: too many')]
    """
    raise_for_status(status, headers, body)
    items = decode_json(body)
    if not isinstance(items, list):
        raise exceptions.ProtocolError("fork answer is not a JSON array")
    out: list[SandboxHandle | exceptions.SandlotError] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("sandbox"), dict):
            out.append(_handle(item["sandbox"]))
        elif isinstance(item, dict) and isinstance(item.get("error"), dict):
            error = item["error"]
            code = error.get("code") if isinstance(error.get("code"), int) else 500
            out.append(errors.error_from_http(code, json.dumps(error).encode(), context="sandbox"))
        else:
            raise exceptions.ProtocolError("fork answer item has neither sandbox nor error")
    return out


def parse_snapshot(status: int, headers: Mapping[str, str], body: bytes) -> models.SnapshotInfo:
    """The answer to ``POST /sandboxes/{id}/snapshots`` (201).

    Example:
        >>> parse_snapshot(201, {}, b'{"snapshotID":"a:v1","names":["a:v1"]}').snapshot_id
        'a:v1'
    """
    raise_for_status(status, headers, body)
    return _snapshot(decode_json_object(body))


def parse_snapshot_list(
    status: int, headers: Mapping[str, str], body: bytes
) -> tuple[list[models.SnapshotInfo], str | None]:
    """The answer to ``GET /snapshots``: one page, and the token of the next (or None).

    Example:
        >>> parse_snapshot_list(200, {}, b"[]")
        ([], None)
    """
    return _page(status, headers, body, "snapshot list", _snapshot)


def _page(
    status: int, headers: Mapping[str, str], body: bytes, what: str, parse_item: Callable[[Any], T]
) -> tuple[list[T], str | None]:
    """One page of a list answer, and the ``X-Next-Token`` of the next page (or None)."""
    raise_for_status(status, headers, body, sandbox=False)
    items = decode_json(body)
    if not isinstance(items, list):
        raise exceptions.ProtocolError(f"{what} is not a JSON array")
    token = {k.lower(): v for k, v in headers.items()}.get("x-next-token") or None
    return [parse_item(item) for item in items], token


def parse_delete_snapshot(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    """The answer to ``DELETE /templates/{id}``: True if deleted, False if there was none (404).

    Example:
        >>> parse_delete_snapshot(204, {}, b""), parse_delete_snapshot(404, {}, b"nope")
        (True, False)
    """
    return _done_unless(404, status, headers, body, sandbox=False)


def _done_unless(
    nothing_to_do: int, status: int, headers: Mapping[str, str], body: bytes, sandbox: bool = True
) -> bool:
    """True if the request did its work, False if the server answered ``nothing_to_do``."""
    if status == nothing_to_do:
        return False
    raise_for_status(status, headers, body, sandbox=sandbox)
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
            boot=str(data["boot"]) if data.get("boot") else None,
            lifecycle=_lifecycle(data.get("lifecycle")),
            idle_timeout=int(data["idleTimeout"]) if data.get("idleTimeout") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise exceptions.ProtocolError(f"malformed sandbox entry: {exc!r}") from None


def _lifecycle(data: Any) -> models.SandboxLifecycle | None:
    if data is None:
        return None
    return models.SandboxLifecycle(auto_resume=bool(data["autoResume"]), on_timeout=str(data["onTimeout"]))


def _snapshot(data: Any) -> models.SnapshotInfo:
    if not isinstance(data, dict):
        raise exceptions.ProtocolError("snapshot entry is not a JSON object")
    try:
        snapshot_id = str(data["snapshotID"])
        return models.SnapshotInfo(
            snapshot_id=snapshot_id,
            names=[str(n) for n in data.get("names") or [snapshot_id]],
            sandbox_id=str(data["sandboxID"]) if data.get("sandboxID") else None,
            memory=bool(data.get("memory", True)),
            created_at=parse_time(data.get("createdAt")),
            size_bytes=int(data.get("sizeBytes") or 0),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise exceptions.ProtocolError(f"malformed snapshot entry: {exc!r}") from None


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


def decode_json(body: bytes) -> Any:
    """A control-plane answer's JSON body; anything else is a :class:`ProtocolError`."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise exceptions.ProtocolError(f"invalid JSON from the control plane: {exc}") from None


def decode_json_object(body: bytes) -> dict[str, Any]:
    """A control-plane answer's body, which must be a JSON object."""
    value = decode_json(body)
    if not isinstance(value, dict):
        raise exceptions.ProtocolError("expected a JSON object from the control plane")
    return value


def _seconds(value: float) -> int:
    if value < 0:
        raise exceptions.InvalidArgumentError(f"a timeout cannot be negative: {value}")
    return int(value)
