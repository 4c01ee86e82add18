"""A Connect message nested past Python's recursion limit, sent to a real `sandlot serve`.

Found while writing fuzz/connect.py, whose seed corpus keeps such inputs: ``json.loads``
raises RecursionError (not ValueError) on about a thousand nested brackets, and the sandbox
plane answered it with a 500.
"""

from __future__ import annotations

import struct

import pytest

from tests.api.conftest import Server

pytestmark = pytest.mark.slow

DEEP = b"[" * 5000


def test_deeply_nested_message_is_invalid_argument(server: Server, cleanup: list[str]) -> None:
    with server.client() as control:
        created = control.post("/sandboxes", json={"templateID": "base", "timeout": 60})
        assert created.status_code == 201, created.text
        sandbox = created.json()
        cleanup.append(sandbox["sandboxID"])
        headers = {"E2b-Sandbox-Id": sandbox["sandboxID"], "X-Access-Token": sandbox["envdAccessToken"]}
        unary = control.post(
            "/filesystem.Filesystem/Stat",
            content=DEEP,
            headers={**headers, "Content-Type": "application/json"},
        )
        stream = control.post(
            "/process.Process/Start",
            content=struct.pack(">BI", 0, len(DEEP)) + DEEP,
            headers={**headers, "Content-Type": "application/connect+json"},
        )
    for answer in (unary, stream):
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"code": "invalid_argument", "message": "the message nests too deeply"}
