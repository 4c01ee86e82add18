"""The port proxy holds each sandbox to SANDLOT_PROXY_CONNECTIONS requests at once (429 with
Retry-After past it), gives up on a port that stays silent SANDLOT_PROXY_READ_TIMEOUT seconds
(504) and on a client that sends nothing of its body for SANDLOT_PROXY_IDLE_TIMEOUT seconds
(408), each time giving its place back (issue 11, item 5). Here: 2 requests, 3 s, 4 s."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from e2b import Sandbox

from tests.security.admission import create, error, serve

SILENT = """\
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8001))
s.listen(64)
held = []
while True:
    held.append(s.accept()[0])  # and never a byte back
"""


def _stalled_upload(port: int, headers: dict[str, str]) -> socket.socket:
    """A proxied POST that promises 100 bytes of body and sends 10."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conn.sendall(f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: 100\r\n\r\n0123456789".encode())
    return conn


def _answer(conn: socket.socket) -> str:
    """The whole HTTP answer on ``conn`` (head and a body of its content-length)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_proxy_connection_cap_and_timeouts(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"proxy_connections": 2, "proxy_read_timeout": 3, "proxy_idle_timeout": 4}
    with serve(data_root, monkeypatch, **settings) as server, server.client() as client:
        made = create(client).json()
        sbx = Sandbox.connect(made["sandboxID"])
        sbx.files.write("/tmp/silent.py", SILENT)
        sbx.files.write("/tmp/www/ok.txt", "ok")
        for command in ("python3 -m http.server 8000 --directory /tmp/www", "python3 /tmp/silent.py"):
            sbx.commands.run(f"exec {command} >/dev/null 2>&1", background=True).disconnect()
        headers = {"E2b-Sandbox-Id": made["sandboxID"], "X-Access-Token": made["envdAccessToken"]}
        web = {**headers, "E2b-Sandbox-Port": "8000"}

        def fetch() -> httpx.Response:
            return httpx.get(f"{server.url}/ok.txt", headers=web, timeout=30)

        deadline = time.monotonic() + 20
        while fetch().status_code != 200:
            assert time.monotonic() < deadline, "the sandbox's web server never answered"
            time.sleep(0.1)

        started = time.monotonic()
        silent = httpx.get(f"{server.url}/", headers={**headers, "E2b-Sandbox-Port": "8001"}, timeout=30)
        assert "did not answer within 3 s" in error(silent, 504)
        assert time.monotonic() - started < 15, "the silent port is given up on, not waited for"

        stalled = [_stalled_upload(server.port, web) for _ in range(2)]
        try:
            deadline = time.monotonic() + 3
            while (third := fetch()).status_code != 429:
                assert time.monotonic() < deadline, "a third request at once was served"
                time.sleep(0.05)
            assert "2 proxied requests open" in error(third, 429)
            assert third.headers["Retry-After"] == "1"
            for conn in stalled:
                answer = _answer(conn)
                assert answer.startswith("HTTP/1.1 408"), answer
                assert "no byte of the request body came for 4 s" in answer
        finally:
            for conn in stalled:
                conn.close()
        for _ in range(5):
            assert fetch().text == "ok", "every place was given back"
