"""Fuzz target: ``POST /files`` (raw and multipart bodies, plain or gzip) and gzip downloads.

The requests go through the sandbox plane's ASGI app (`sandlot.api.sandbox`) in process. A
directory with its own /etc/passwd stands in for the sandbox's root: what is under test is
the parsing of bodies (python-multipart driven by `sandlot.agent.files`, and the gzip
inflater), which does not need a running sandbox.

Input: three option bytes, then the payload.

* byte 0, bit 0: a multipart body (the payload is its content, boundary ``XyZ``); else a
  raw upload of the payload to /home/user/upload.
* bit 1: sent with ``Content-Encoding: gzip``; bit 2: gzipped by the harness first (else the
  payload itself is the "gzip"); bit 3: the gzip stream cut short, to byte 2 / 256 of its
  length; bit 4: a raw upload is read back with ``Accept-Encoding: gzip``.
* byte 1: the size of the pieces the body arrives in (1-256 bytes).

Properties: never a 500 or an exception out of the app; every error is JSON
``{"code": <status>, "message": ...}``; a raw upload that is plain or validly gzipped stores
exactly the payload, and reads back the same; a cut gzip stream is a 400; every file a
multipart upload reports is there.

Run: ``python -m fuzz.files [libFuzzer flags] [corpus dirs]``; ``python -m fuzz`` runs it for
a bounded time. The stand-in root is made under $TMPDIR.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import posixpath
import shutil
import tempfile
from pathlib import Path

import atheris
import httpx

with atheris.instrument_imports(include=["sandlot.agent", "sandlot.api", "python_multipart"]):
    from sandlot.api import sandbox
    from sandlot.runtime import target

from fuzz import _harness
from sandlot.runtime import models

ROOT = Path(tempfile.mkdtemp(prefix="sandlot-fuzz-root-"))
USER_UID = 1000
PASSWD = f"root:x:0:0:root:/root:/bin/sh\nuser:x:{USER_UID}:{USER_UID}::/home/user:/bin/bash\n"
GROUP = f"root:x:0:\nuser:x:{USER_UID}:\n"
RAW_PATH = "/home/user/upload"
BOUNDARY = "XyZ"
logging.getLogger("python_multipart").setLevel(logging.ERROR)  # a warning per malformed body

MULTIPART, GZIP_HEADER, GZIP_BODY, CUT, GZIP_DOWNLOAD = (1 << bit for bit in range(5))

TARGET = target.SandboxTarget(
    sandbox_id="fuzz",
    driver=None,  # type: ignore[arg-type]  # /files never reaches the runtime driver
    address="",
    filesystem=models.HostFilesystem(root=ROOT, uid_base=0),
)


async def _resolve(sandbox_id: str, access_token: str | None) -> target.SandboxTarget:
    return TARGET


CLIENT = httpx.AsyncClient(
    transport=httpx.ASGITransport(app=sandbox.create_sandbox_app(_resolve)),
    base_url="http://sandbox",
    headers={"E2b-Sandbox-Id": "fuzz"},
)


def _reset_root() -> None:
    """An empty sandbox root again: only /etc/passwd, /etc/group and the user's home."""
    for entry in ROOT.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    ROOT.chmod(0o755)
    (ROOT / "etc").mkdir()
    (ROOT / "etc" / "passwd").write_text(PASSWD)
    (ROOT / "etc" / "group").write_text(GROUP)
    home = ROOT / "home" / "user"
    home.mkdir(parents=True)
    os.chown(home, USER_UID, USER_UID)


def _host_path(path: str) -> Path:
    return ROOT / posixpath.normpath(path).lstrip("/")


def _check_error(reply: httpx.Response) -> None:
    assert reply.status_code != 500, f"HTTP 500: {reply.content[:300]!r}"
    error = json.loads(reply.content)
    assert error.get("code") == reply.status_code and isinstance(error.get("message"), str), reply.content[:300]


async def test_one_input(data: bytes) -> None:
    options, payload = _harness.split_options(data, 3)
    flags, size, cut = options[0], options[1] + 1, options[2]
    body = gzip.compress(payload, mtime=0) if flags & GZIP_HEADER and flags & GZIP_BODY else payload
    truncated = bool(flags & GZIP_HEADER and flags & CUT)
    if truncated:
        body = body[: len(body) * cut // 256]
    headers = {"content-encoding": "gzip"} if flags & GZIP_HEADER else {}
    if flags & MULTIPART:
        headers["content-type"] = f"multipart/form-data; boundary={BOUNDARY}"
        params = {}
    else:
        headers["content-type"] = "application/octet-stream"
        params = {"path": RAW_PATH}
    _reset_root()
    reply = await CLIENT.post("/files", params=params, headers=headers, content=_harness.chunked(body, size))
    if reply.status_code != 200:
        _check_error(reply)
        return
    entries = reply.json()
    assert not truncated or not flags & GZIP_BODY, "a cut gzip stream was accepted"
    for entry in entries:
        assert _host_path(entry["path"]).is_file(), f"{entry['path']} was reported but not written"
    if flags & MULTIPART or (flags & GZIP_HEADER and not flags & GZIP_BODY):
        return
    assert _host_path(RAW_PATH).read_bytes() == payload, "the stored file is not the payload"
    accept = "gzip" if flags & GZIP_DOWNLOAD else "identity"
    back = await CLIENT.get("/files", params={"path": RAW_PATH}, headers={"accept-encoding": accept})
    assert back.status_code == 200 and back.content == payload, "the download is not the payload"


if __name__ == "__main__":
    _harness.fuzz_async(test_one_input)
