"""``filesystem.Filesystem`` calls and the ``/files`` HTTP API, built and parsed without I/O.

Metadata and directory operations go through Connect RPCs; file *contents* go through plain
HTTP ``GET``/``POST /files`` (docs/e2b-wire.md §6, §7). Single writes use the octet-stream
shape, one request per file, so a file-like or iterable body streams in chunks and is never held
whole; ``write_many`` uses one multipart request, the form e2b uses for several files.

Example:
    >>> files_params("/tmp/a", user="root")
    {'path': '/tmp/a', 'username': 'root'}
    >>> parse_entry({"name": "a", "type": "FILE_TYPE_FILE", "path": "/a", "size": "3"}).size
    3
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sandlot.sdk import exceptions
from sandlot.sdk._core import api, errors, models

__all__ = [
    "files_params",
    "metadata_headers",
    "parse_entry",
    "parse_watch_message",
    "parse_write_answer",
    "watch_request",
]

SERVICE = "filesystem.Filesystem"
CHUNK = 256 * 1024  # upload and download chunk: big enough for throughput, small enough for memory

_FILE_TYPES = {
    "FILE_TYPE_FILE": models.FileType.FILE,
    "FILE_TYPE_DIRECTORY": models.FileType.DIR,
    "FILE_TYPE_SYMLINK": models.FileType.SYMLINK,
    1: models.FileType.FILE,
    2: models.FileType.DIR,
    3: models.FileType.SYMLINK,
    "file": models.FileType.FILE,
    "dir": models.FileType.DIR,
}
_EVENT_TYPES = {
    "EVENT_TYPE_CREATE": models.WatchEventType.CREATE,
    "EVENT_TYPE_WRITE": models.WatchEventType.WRITE,
    "EVENT_TYPE_REMOVE": models.WatchEventType.REMOVE,
    "EVENT_TYPE_RENAME": models.WatchEventType.RENAME,
    "EVENT_TYPE_CHMOD": models.WatchEventType.CHMOD,
    1: models.WatchEventType.CREATE,
    2: models.WatchEventType.WRITE,
    3: models.WatchEventType.REMOVE,
    4: models.WatchEventType.RENAME,
    5: models.WatchEventType.CHMOD,
}


def path(method: str) -> str:
    """The URL path of an RPC of this service.

    Example:
        >>> path("Stat")
        '/filesystem.Filesystem/Stat'
    """
    return f"/{SERVICE}/{method}"


def check_path(value: str) -> str:
    """Refuse an empty path or one with a NUL byte before it reaches the wire.

    Example:
        >>> check_path("")
        Traceback (most recent call last):
        sandlot.sdk.exceptions.InvalidArgumentError: a path cannot be empty
    """
    if not isinstance(value, str) or not value:
        raise exceptions.InvalidArgumentError("a path cannot be empty")
    if "\x00" in value:
        raise exceptions.InvalidArgumentError("a path cannot contain a NUL byte")
    return value


def list_request(dir_path: str, depth: int = 1) -> dict[str, Any]:
    """``ListDirRequest``; depth 1 lists direct children.

    Example:
        >>> list_request("/tmp", 2)
        {'path': '/tmp', 'depth': 2}
    """
    if depth < 1:
        raise exceptions.InvalidArgumentError(f"depth must be at least 1, not {depth}")
    return {"path": check_path(dir_path), "depth": depth}


def move_request(source: str, destination: str) -> dict[str, Any]:
    """``MoveRequest``.

    Example:
        >>> move_request("/a", "/b")
        {'source': '/a', 'destination': '/b'}
    """
    return {"source": check_path(source), "destination": check_path(destination)}


def watch_request(dir_path: str, *, recursive: bool = False, include_entry: bool = False) -> dict[str, Any]:
    """``WatchDirRequest``; false flags are omitted, as proto3 JSON does.

    Example:
        >>> watch_request("/tmp", recursive=True)
        {'path': '/tmp', 'recursive': True}
    """
    message: dict[str, Any] = {"path": check_path(dir_path)}
    if recursive:
        message["recursive"] = True
    if include_entry:
        message["includeEntry"] = True
    return message


def parse_entry(entry: Mapping[str, Any]) -> models.EntryInfo:
    """An ``EntryInfo`` message; a symlink reported as ``isSymlink`` + target type is a symlink.

    Example:
        >>> parse_entry({"name": "l", "path": "/l", "type": "FILE_TYPE_FILE", "isSymlink": True}).type
        <FileType.SYMLINK: 'symlink'>
    """
    try:
        kind = _FILE_TYPES.get(entry.get("type"))
        if entry.get("isSymlink"):
            kind = models.FileType.SYMLINK
        return models.EntryInfo(
            name=str(entry.get("name") or ""),
            path=str(entry.get("path") or ""),
            type=kind,
            size=int(entry.get("size") or 0),
            mode=int(entry.get("mode") or 0),
            permissions=str(entry.get("permissions") or ""),
            owner=str(entry.get("owner") or ""),
            group=str(entry.get("group") or ""),
            modified_time=api.parse_time(entry.get("modifiedTime")),
            symlink_target=entry.get("symlinkTarget"),
            metadata=dict(entry.get("metadata") or {}),
        )
    except (TypeError, ValueError) as exc:
        raise exceptions.ProtocolError(f"malformed entry {dict(entry)!r}: {exc}") from None


def parse_entries(message: Mapping[str, Any]) -> list[models.EntryInfo]:
    """``ListDirResponse`` → entries, dropping those of an unknown type (as e2b does).

    Example:
        >>> [e.name for e in parse_entries({"entries": [{"name": "a", "type": "FILE_TYPE_FILE"}, {"name": "?"}]})]
        ['a']
    """
    entries = [parse_entry(item) for item in message.get("entries") or []]
    return [e for e in entries if e.type is not None]


def parse_watch_message(message: Mapping[str, Any]) -> models.WatchEvent | str | None:
    """One ``WatchDirResponse``: a :class:`WatchEvent`, ``"start"``, or None (keepalive, unknown type).

    Example:
        >>> parse_watch_message({"filesystem": {"name": "a", "type": "EVENT_TYPE_CREATE"}})
        WatchEvent(name='a', type=<WatchEventType.CREATE: 'create'>, entry=None)
        >>> parse_watch_message({"start": {}})
        'start'
    """
    if "start" in message:
        return "start"
    event = message.get("filesystem")
    if not isinstance(event, dict):
        return None
    kind = _EVENT_TYPES.get(event.get("type"))
    if kind is None:
        return None
    entry = event.get("entry")
    return models.WatchEvent(
        name=str(event.get("name") or ""),
        type=kind,
        entry=parse_entry(entry) if isinstance(entry, dict) else None,
    )


# --------------------------------------------------------------------------------- /files


def files_params(file_path: str | None, *, user: str | None = None) -> dict[str, str]:
    """Query parameters of ``/files``: the path, and the user (by name, never by Authorization).

    Example:
        >>> files_params(None)
        {}
    """
    params = {}
    if file_path is not None:
        params["path"] = check_path(file_path)
    if user is not None:
        params["username"] = user
    return params


def metadata_headers(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """``X-Metadata-<key>`` headers for an upload; keys must be HTTP tokens, values printable ASCII.

    Example:
        >>> metadata_headers({"owner": "me"})
        {'X-Metadata-owner': 'me'}
    """
    headers = {}
    for key, value in (metadata or {}).items():
        if not key or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in key) or not key.isascii():
            raise exceptions.InvalidArgumentError(f"metadata key {key!r} is not an HTTP token")
        if not value.isascii() or not value.isprintable():
            raise exceptions.InvalidArgumentError(f"metadata value for {key!r} must be printable ASCII")
        headers[f"X-Metadata-{key}"] = value
    return headers


def parse_write_answer(status: int, headers: Mapping[str, str], body: bytes) -> list[models.WriteInfo]:
    """The answer to ``POST /files``: a non-empty JSON array of written entries.

    Example:
        >>> parse_write_answer(200, {}, b'[{"name":"a","type":"file","path":"/a"}]')
        [WriteInfo(name='a', path='/a', type=<FileType.FILE: 'file'>, metadata={})]
    """
    check_files_status(status, headers, body)
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise exceptions.ProtocolError(f"invalid JSON answer to an upload: {exc}") from None
    if not isinstance(items, list) or not items:
        raise exceptions.ProtocolError("expected information about the written files")
    try:
        return [
            models.WriteInfo(
                name=str(item["name"]),
                path=str(item["path"]),
                type=_FILE_TYPES.get(item.get("type")),
                metadata=dict(item.get("metadata") or {}),
            )
            for item in items
        ]
    except (KeyError, TypeError) as exc:
        raise exceptions.ProtocolError(f"malformed upload answer: {exc!r}") from None


def check_files_status(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Raise the mapped error of a ``/files`` answer (404 is a missing path, 507 a full disk).

    Example:
        >>> check_files_status(404, {}, b'{"code":404,"message":"no such file"}')
        Traceback (most recent call last):
        sandlot.sdk.exceptions.PathNotFoundError: 404: no such file
    """
    if status >= 400:
        raise errors.error_from_http(status, body, headers, context="filesystem")
