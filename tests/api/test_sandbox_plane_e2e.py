"""The sandbox plane end to end: a real `sandlot serve` (tests/api/conftest.py) driven by the
unmodified e2b SDK with E2B_API_URL and E2B_SANDBOX_URL pointed at it."""

from __future__ import annotations

import time

import httpx
import pytest
from e2b import CommandExitException, Sandbox

from tests._support.server import Server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("e2b_env")]


def test_commands_files_and_pty_through_the_server(cleanup: list[str]) -> None:
    from e2b.sandbox.commands.command_handle import PtySize

    sbx = Sandbox.create(timeout=60, envs={"FROM_CREATE": "yes"})
    cleanup.append(sbx.sandbox_id)
    result = sbx.commands.run("echo $FROM_CREATE; id -un; printf 'x\\ny'")
    assert result.stdout == "yes\nuser\nx\ny"
    with pytest.raises(CommandExitException):
        sbx.commands.run("exit 2")
    sbx.files.write("dir/a.txt", "hello")
    assert sbx.files.read("/home/user/dir/a.txt") == "hello"
    assert [e.name for e in sbx.files.list("dir")] == ["a.txt"]
    out = bytearray()
    handle = sbx.pty.create(PtySize(rows=24, cols=80))
    sbx.pty.send_stdin(handle.pid, b"echo pty-$((1+1)); exit 0\n")
    handle.wait(on_pty=out.extend)
    assert b"pty-2" in out
    assert sbx.is_running()
    sbx.kill()
    assert not sbx.is_running()


def test_signed_urls_through_the_server(server: Server, cleanup: list[str]) -> None:
    """Signed URLs carry no sandbox header: they reach their sandbox by its host name,
    ``49983-<id>.<domain>``, as behind a wildcard DNS name and a TLS proxy (with
    E2B_SANDBOX_URL set, the SDK builds them on that URL instead, which names no sandbox)."""
    sbx = Sandbox.create(timeout=60, secure=True)
    cleanup.append(sbx.sandbox_id)
    sbx.files.write("/home/user/s.txt", "signed")
    host = {"host": f"49983-{sbx.sandbox_id}.sandlot.test"}

    def local(url: str) -> str:
        return server.url + url[url.index("/files") :]

    url = sbx.download_url("/home/user/s.txt", use_signature_expiration=60)
    assert httpx.get(local(url), headers=host).text == "signed"
    upload = sbx.upload_url("/home/user/u.txt", use_signature_expiration=60)
    assert httpx.post(local(upload), headers=host, files={"file": ("u.txt", b"up")}).status_code == 200
    assert sbx.files.read("/home/user/u.txt") == "up"
    forged = local(url).replace("signature=", "signature=x")
    assert httpx.get(forged, headers=host).status_code == 401
    soon = sbx.download_url("/home/user/s.txt", use_signature_expiration=1)
    time.sleep(2.1)
    assert httpx.get(local(soon), headers=host).status_code in (401, 403)
