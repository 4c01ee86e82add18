"""``GET /files`` and ``POST /files``: file contents in and out of a sandbox, streamed.

Neither direction holds a file in memory: a download is read in `CHUNK` pieces from a
descriptor opened through `RootFS` (so a planted symlink cannot lead to a host file), an upload
is written as its body arrives, multipart bodies parsed incrementally by python-multipart.
File I/O runs in the sandbox plane's `sandlot.agent.iopool.IOPool`, as the user the request
names (`filesystem.Access`), and opens only regular files (`RootFS.open_file`): a FIFO,
socket or device is a 400, never a thread waiting forever.

Wire details (docs/e2b-wire.md section 7): the user comes from the ``username`` query parameter;
``Content-Encoding: gzip`` uploads are inflated as they stream; a download is gzipped when the
request accepts gzip; ``X-Metadata-<key>`` headers become ``user.e2b.<key>`` xattrs; errors are
JSON ``{"code": <status>, "message": ...}`` with the status of their row of the one table
(`sandlot._wire.codes`): a full disk is 507, a sandbox that stopped answering 502.

Signed URLs (`check_signature`, which the app calls instead of checking an access token):

* ``v2_`` signatures, sandlot's own (`hmac_signature`): HMAC-SHA256 keyed with the sandbox's
  access token over length-prefixed fields (sandbox id, path, operation, user, expiry), so no
  two field lists sign the same bytes. Whatever the server hands out uses these.
* ``v1_`` signatures, E2B's (`signature`): the e2b SDK computes them itself, as SHA-256 over
  ``path:operation:user:token[:expiry]``, so the scheme cannot change; they are accepted with
  two extra rules that keep the join unambiguous and the URL short-lived: a user name must not
  contain ``:``, and the expiry must be present.

Both need ``signature_expiration`` no more than `MAX_SIGNATURE_LIFETIME` ahead, and a write
signature must name its path (else one URL could write any file).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import posixpath
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from sandlot._wire import codes, framing
from sandlot._wire import errors as wire
from sandlot.agent import filesystem, iopool, rpc

__all__ = [
    "CHUNK",
    "MAX_SIGNATURE_LIFETIME",
    "SignatureError",
    "check_signature",
    "download",
    "error_response",
    "hmac_signature",
    "signature",
    "upload",
]

CHUNK = 1024 * 1024
MAX_PARTS = 1000
MAX_SIGNATURE_LIFETIME = 7 * 24 * 3600
"""Seconds a signed URL may live: ``signature_expiration`` further ahead is refused."""
_METADATA_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,200}$")


class _JSONResponse(JSONResponse):
    """JSON whose file names may not be UTF-8 (lone surrogates from os.fsdecode): those go out
    as ``\\udcXX`` escapes, which read back as the same name."""

    def render(self, content: Any) -> bytes:
        return framing.encode_message(content)


def error_response(status: int, message: str) -> JSONResponse:
    """An error in the E2B REST shape, which the e2b SDK reads on ``/files``."""
    return _JSONResponse(codes.error_body(status, message), status_code=status)


def _from_error(exc: wire.WireError) -> JSONResponse:
    return error_response(exc.status, str(exc))


# -- signed URLs -------------------------------------------------------------------------------


class SignatureError(Exception):
    """A signed URL that does not open the sandbox; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def signature(path: str, operation: str, user: str, token: str, expiration: int | None = None) -> str:
    """E2B's signed-URL signature: ``v1_`` + unpadded base64 of a SHA-256 over the fields.

    Example:
        >>> signature("/a", "read", "", "tok", 1767225600)
        'v1_...'
    """
    raw = f"{path}:{operation}:{user}:{token}"
    if expiration is not None:
        raw += f":{expiration}"
    return "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode().rstrip("=")


def hmac_signature(sandbox_id: str, path: str, operation: str, user: str, token: str, expiration: int) -> str:
    """sandlot's signed-URL signature: ``v2_`` + HMAC-SHA256 (key: the access token) over the
    fields, each prefixed with its length, in unpadded URL-safe base64.

    Example:
        >>> hmac_signature("sbx1", "/a", "read", "", "tok", 1767225600)
        'v2_...'
    """
    fields = ("sandlot-files-v2", sandbox_id, path, operation, user, str(expiration))
    message = b"".join(struct.pack(">I", len(f.encode())) + f.encode() for f in fields)
    digest = hmac.new(token.encode(), message, hashlib.sha256).digest()
    return "v2_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_signature(
    sig: str,
    *,
    sandbox_id: str,
    path: str,
    operation: str,
    user: str,
    token: str,
    expiration_text: str | None,
) -> None:
    """Accept a signed ``/files`` request, or raise `SignatureError` saying why not."""
    if expiration_text is None:
        raise SignatureError(401, "a signed URL must carry signature_expiration (sign it with an expiry)")
    if not expiration_text.isdigit() or len(expiration_text) > 12:
        raise SignatureError(400, "signature_expiration must be a Unix time in seconds")
    expiration = int(expiration_text)
    if operation == "write" and not path:
        raise SignatureError(401, "a signed upload URL must name the path it writes")
    if ":" in user:
        raise SignatureError(400, "a user name must not contain ':'")
    if sig.startswith("v2_"):
        want = hmac_signature(sandbox_id, path, operation, user, token, expiration)
    else:
        want = signature(path, operation, user, token, expiration)
    if not hmac.compare_digest(sig.encode(), want.encode()):
        raise SignatureError(401, "invalid signature")
    now = time.time()
    if expiration < now:
        raise SignatureError(403, "the signature has expired")
    if expiration > now + MAX_SIGNATURE_LIFETIME:
        raise SignatureError(
            400, f"signature_expiration is too far ahead: a signed URL lives at most {MAX_SIGNATURE_LIFETIME} s"
        )


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip()
            try:
                return not q or float(q) > 0
            except ValueError:
                return False
    return False


# -- download ----------------------------------------------------------------------------------


async def download(request: Request, call: rpc.Call, io: iopool.IOPool) -> Response:
    raw = request.query_params.get("path")
    if not raw:
        return error_response(400, "the path query parameter is required")

    def open_file(access: filesystem.Access) -> tuple[int, str, os.stat_result]:
        path = access.path(raw)
        with filesystem.fs_errors(path):
            fd = access.root.open_file(path, os.O_RDONLY)
            return fd, path, os.fstat(fd)

    try:
        fd, path, st = await filesystem.in_pool(io, call, open_file)
    except wire.WireError as exc:
        return _from_error(exc)
    gzipped = _accepts_gzip(request.headers.get("accept-encoding", ""))
    headers = {"content-disposition": f"attachment; filename*=UTF-8''{_quote(posixpath.basename(path))}"}
    if gzipped:
        headers["content-encoding"] = "gzip"
        headers["vary"] = "Accept-Encoding"
    else:
        headers["content-length"] = str(st.st_size)
    return StreamingResponse(
        _read_chunks(fd, call, io, gzipped), media_type="application/octet-stream", headers=headers
    )


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


async def _read_chunks(fd: int, call: rpc.Call, io: iopool.IOPool, gzipped: bool) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzipped else None
    try:
        while True:
            chunk = await io.run(call.target.sandbox_id, lambda: os.read(fd, CHUNK))
            if not chunk:
                break
            call.target.touch()
            if compressor is None:
                yield chunk
            elif out := compressor.compress(chunk):
                yield out
        if compressor is not None:
            yield compressor.flush()
    finally:
        os.close(fd)


# -- upload ------------------------------------------------------------------------------------


class _Writer:
    """Writes one uploaded file: parents made, truncated, metadata set. Made in a pool thread
    acting as the user, so it is the user's, and refused where the user may not write."""

    def __init__(self, access: filesystem.Access, raw: str, metadata: dict[str, str]) -> None:
        self.path = access.path(raw)
        if self.path == "/":
            raise wire.InvalidArgument("cannot write to the root directory")
        with filesystem.fs_errors(self.path):
            access.root.make_dirs(posixpath.dirname(self.path))
            self.fd = access.root.open_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with filesystem.fs_errors(self.path):
                for key, value in metadata.items():
                    os.setxattr(self.fd, f"{filesystem.XATTR_PREFIX}{key}", value.encode())
        except BaseException:
            os.close(self.fd)
            raise
        self.metadata = metadata

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        with filesystem.fs_errors(self.path):
            while view:
                view = view[os.write(self.fd, view) :]

    def close(self) -> dict[str, Any]:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        entry: dict[str, Any] = {"name": posixpath.basename(self.path), "type": "file", "path": self.path}
        if self.metadata:
            entry["metadata"] = self.metadata
        return entry

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _metadata(request: Request) -> dict[str, str]:
    out = {}
    for name, value in request.headers.items():
        if name.lower().startswith("x-metadata-"):
            key = name[len("x-metadata-") :]
            if not _METADATA_KEY.match(key) or not value.isprintable() or len(value) > 4096:
                raise wire.InvalidArgument(f"metadata header {name!r} has an invalid key or value")
            out[key] = value
    return out


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body, inflated when it came with ``Content-Encoding: gzip``."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        async for chunk in request.stream():
            yield chunk
        return
    if encoding != "gzip":
        raise wire.InvalidArgument(f"content-encoding {encoding!r} is not supported (gzip or identity)")
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        async for chunk in request.stream():
            data = inflater.decompress(chunk, CHUNK)
            while data:
                yield data
                data = inflater.decompress(inflater.unconsumed_tail, CHUNK) if inflater.unconsumed_tail else b""
        if not inflater.eof:
            raise wire.InvalidArgument("the gzip body is truncated")
    except zlib.error as exc:
        raise wire.InvalidArgument(f"the body is not valid gzip: {exc}") from None


async def upload(request: Request, call: rpc.Call, io: iopool.IOPool) -> Response:
    sid = call.target.sandbox_id
    try:
        metadata = _metadata(request)
        access = await io.run(sid, lambda: filesystem.Access.open(call), deadline=call.deadline)
    except wire.WireError as exc:
        return _from_error(exc)
    try:
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        if content_type == b"multipart/form-data":
            entries = await _upload_multipart(request, call, io, access, params.get(b"boundary"), metadata)
        else:
            raw = request.query_params.get("path")
            if not raw:
                raise wire.InvalidArgument("the path query parameter is required for a raw upload")
            entries = [await _upload_raw(request, call, io, access, raw, metadata)]
    except wire.WireError as exc:
        return _from_error(exc)
    except ValueError as exc:  # python-multipart's parse errors
        return error_response(400, f"malformed multipart body: {exc}")
    finally:
        access.close()
    if not entries:
        return error_response(400, "the multipart body holds no file")
    return _JSONResponse(entries)


async def _upload_raw(
    request: Request,
    call: rpc.Call,
    io: iopool.IOPool,
    access: filesystem.Access,
    raw: str,
    metadata: dict[str, str],
) -> dict[str, Any]:
    sid = call.target.sandbox_id
    writer = await io.run(sid, access.as_user(lambda: _Writer(access, raw, metadata)))
    try:
        async for chunk in _body(request):
            await io.run(sid, lambda: writer.write(chunk))  # noqa: B023 - awaited at once
            call.target.touch()
    except BaseException:
        writer.abort()
        raise
    return writer.close()


async def _upload_multipart(
    request: Request,
    call: rpc.Call,
    io: iopool.IOPool,
    access: filesystem.Access,
    boundary: bytes | None,
    metadata: dict[str, str],
) -> list[dict[str, Any]]:
    if not boundary:
        raise wire.InvalidArgument("multipart/form-data needs a boundary")
    query_path = request.query_params.get("path")
    entries: list[dict[str, Any]] = []
    state: dict[str, Any] = {"writer": None, "field": b"", "value": b"", "headers": {}}

    def on_part_begin() -> None:
        if len(entries) >= MAX_PARTS:
            raise wire.InvalidArgument(f"at most {MAX_PARTS} files per request")
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        filename = params.get(b"filename")
        target = query_path or (filename.decode("utf-8", "surrogateescape") if filename else "")
        if not target:
            raise wire.InvalidArgument("a file part needs a filename (its destination path) or ?path=")
        state["writer"] = _Writer(access, target, metadata)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["writer"].write(data[start:end])

    def on_part_end() -> None:
        writer = state["writer"]
        state["writer"] = None
        if writer is not None:
            entries.append(writer.close())

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    sid = call.target.sandbox_id
    try:
        async for chunk in _body(request):
            await io.run(sid, access.as_user(lambda: parser.write(chunk)))  # noqa: B023 - awaited at once
            call.target.touch()
        await io.run(sid, access.as_user(parser.finalize))
    finally:
        if state["writer"] is not None:
            with contextlib.suppress(OSError):
                state["writer"].abort()
    return entries
