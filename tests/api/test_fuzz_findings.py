"""What the fuzzers (fuzz/) found in the sandbox plane, checked against a real `sandlot serve`.

* A Connect message nested past Python's recursion limit: ``json.loads`` raises
  RecursionError, not ValueError, and the plane answered 500. Found while writing
  fuzz/connect.py, whose seed corpus keeps such inputs.
* File names that are not UTF-8. A multipart part's filename is taken as bytes (a sandbox
  may hold any name), but the answer naming it could not be encoded: a 500, found by
  fuzz/files.py within a second. ListDir over such a file failed the same way, and a path
  with a surrogate that no bytes stand for (``\\ud800``) was a 500 on every filesystem call.
  Such names now go out as JSON ``\\udcXX`` escapes, which read back as the same name.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import httpx
import pytest

from tests._support.server import Server

pytestmark = pytest.mark.slow

DEEP = b"[" * 5000


@pytest.fixture(scope="module")
def plane(server: Server) -> Iterator[httpx.Client]:
    """A client of one new sandbox's plane, through the server."""
    with server.client() as control:
        created = control.post("/sandboxes", json={"templateID": "base", "timeout": 120})
        assert created.status_code == 201, created.text
        sandbox = created.json()
        headers = {"E2b-Sandbox-Id": sandbox["sandboxID"], "X-Access-Token": sandbox["envdAccessToken"]}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            try:
                yield client
            finally:
                control.delete(f"/sandboxes/{sandbox['sandboxID']}")


def rpc(plane: httpx.Client, procedure: str, message: dict[str, str]) -> httpx.Response:
    """A filesystem call; its JSON is ASCII, with ``\\uXXXX`` escapes for anything else."""
    content = json.dumps(message).encode()
    headers = {"Content-Type": "application/json"}
    return plane.post(f"/filesystem.Filesystem/{procedure}", content=content, headers=headers)


def test_deeply_nested_message_is_invalid_argument(plane: httpx.Client) -> None:
    unary = plane.post("/filesystem.Filesystem/Stat", content=DEEP, headers={"Content-Type": "application/json"})
    stream = plane.post(
        "/process.Process/Start",
        content=struct.pack(">BI", 0, len(DEEP)) + DEEP,
        headers={"Content-Type": "application/connect+json"},
    )
    for answer in (unary, stream):
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"code": "invalid_argument", "message": "the message nests too deeply"}


def test_file_name_that_is_not_utf8_round_trips(plane: httpx.Client) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="odd/\xff"\r\n\r\n'
        b"latin-1 name\r\n--XyZ--\r\n"
    )
    uploaded = plane.post("/files", content=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert uploaded.status_code == 200, uploaded.text
    assert [entry["path"] for entry in uploaded.json()] == ["/home/user/odd/\udcff"]

    listed = rpc(plane, "ListDir", {"path": "/home/user/odd"})
    assert listed.status_code == 200, listed.text
    assert [entry["name"] for entry in listed.json()["entries"]] == ["\udcff"]
    assert rpc(plane, "Remove", {"path": "/home/user/odd/\udcff"}).status_code == 200
    assert rpc(plane, "ListDir", {"path": "/home/user/odd"}).json().get("entries", []) == []


def test_path_with_an_unpaired_surrogate_is_invalid_argument(plane: httpx.Client) -> None:
    answer = rpc(plane, "Stat", {"path": "/home/user/\ud800"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_argument"
    assert "surrogate" in answer.json()["message"]
