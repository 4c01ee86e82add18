"""Issue 11, item 3: the files API acts with the permissions of the user it names.

Before, it wrote as host root: ``files.write("/etc/passwd", ..., user="user")`` replaced the
sandbox's passwd although ``user`` cannot write it from inside. Now every operation (write,
multipart and raw upload, signed upload URL, rename, remove, make_dir, stat, read) is refused
where that user would be refused inside, works where root would work, and what it makes
belongs to the user it names; the user's groups count. Through the real server and the real
e2b SDK.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2b import Sandbox

from tests._support.server import Server
from tests.security.conftest import module_sandbox

pytestmark = pytest.mark.usefixtures("e2b_env")

DENIED = "permission denied"


@pytest.fixture(scope="module")
def sbx(server: Server) -> Iterator[Sandbox]:
    with module_sandbox(server, secure=True) as sandbox:
        yield sandbox


def _denied(call: object) -> None:
    with pytest.raises(Exception, match=DENIED):
        call()  # type: ignore[operator]


def test_write_and_read_as_user_and_as_root(sbx: Sandbox) -> None:
    passwd = sbx.files.read("/etc/passwd", user="root")
    _denied(lambda: sbx.files.write("/etc/passwd", "pwned", user="user"))
    _denied(lambda: sbx.files.write("/etc/new-file", "x", user="user"))
    _denied(lambda: sbx.files.read("/etc/shadow", user="user"))
    assert sbx.files.read("/etc/passwd", user="root") == passwd
    assert "root:" in sbx.files.read("/etc/shadow", user="root")

    sbx.files.write("/etc/passwd", passwd, user="root")  # root may
    sbx.files.write("/etc/by-root", "r", user="root")
    sbx.files.write("/home/user/by-user", "u", user="user")
    assert sbx.files.get_info("/etc/by-root").owner == "root"
    mine = sbx.files.get_info("/home/user/by-user")
    assert (mine.owner, mine.group) == ("user", "user")
    out = sbx.commands.run("stat -c '%U %G' /etc/by-root /home/user/by-user")
    assert out.stdout.split("\n")[:2] == ["root root", "user user"]


def test_uploads_as_user(server: Server, sbx: Sandbox) -> None:
    headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token or ""}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        raw = client.post(
            "/files",
            params={"path": "/etc/hostname", "username": "user"},
            content=b"pwned",
            headers={"content-type": "application/octet-stream"},
        )
        assert raw.status_code == 403 and DENIED in raw.json()["message"], raw.text
        multi = client.post("/files", params={"username": "user"}, files={"file": ("/etc/hostname", b"pwned")})
        assert multi.status_code == 403 and DENIED in multi.json()["message"], multi.text
        meta = client.post(
            "/files",
            params={"path": "/etc/hosts", "username": "user"},
            content=b"x",
            headers={"content-type": "application/octet-stream", "X-Metadata-k": "v"},
        )
        assert meta.status_code == 403
    assert sbx.files.read("/etc/hostname", user="root") != "pwned"
    assert "pwned" not in sbx.files.read("/etc/hosts")

    upload = sbx.upload_url("/etc/hostname", user="user", use_signature_expiration=60)
    signed = httpx.post(
        server.url + upload[upload.index("/files") :],
        headers={"host": f"49983-{sbx.sandbox_id}.sandlot.test"},
        files={"file": ("hostname", b"pwned")},
    )
    assert signed.status_code == 403, signed.text
    upload = sbx.upload_url("/home/user/signed.txt", user="user", use_signature_expiration=60)
    signed = httpx.post(
        server.url + upload[upload.index("/files") :],
        headers={"host": f"49983-{sbx.sandbox_id}.sandlot.test"},
        files={"file": ("signed.txt", b"ok")},
    )
    assert signed.status_code == 200 and sbx.files.get_info("/home/user/signed.txt").owner == "user"


def test_rename_remove_make_dir_and_stat_as_user(sbx: Sandbox) -> None:
    _denied(lambda: sbx.files.rename("/etc/hostname", "/tmp/stolen", user="user"))
    _denied(lambda: sbx.files.remove("/etc/hostname", user="user"))
    _denied(lambda: sbx.files.make_dir("/etc/new-dir", user="user"))
    _denied(lambda: sbx.files.make_dir("/root/new-dir", user="user"))
    _denied(lambda: sbx.files.get_info("/root/.bashrc", user="user"))
    _denied(lambda: sbx.files.list("/root", user="user"))
    assert sbx.files.exists("/etc/hostname") and not sbx.files.exists("/tmp/stolen")
    assert not sbx.files.exists("/etc/new-dir")

    assert sbx.files.make_dir("/etc/new-dir", user="root")
    assert sbx.files.get_info("/etc/new-dir").owner == "root"
    assert sbx.files.make_dir("/home/user/a/b", user="user")
    assert sbx.files.get_info("/home/user/a").owner == "user"
    sbx.files.write("/etc/moving", "m", user="root")
    assert sbx.files.rename("/etc/moving", "/etc/moved", user="root").path == "/etc/moved"
    sbx.files.remove("/etc/moved", user="root")
    assert not sbx.files.exists("/etc/moved")
    assert sbx.files.get_info("/root/.bashrc", user="root").owner == "root"


def test_the_users_groups_count(sbx: Sandbox) -> None:
    sbx.commands.run(
        "groupadd crew && usermod -aG crew user"
        " && install -m 0660 -g crew /dev/null /srv/crew.txt && install -m 0660 /dev/null /srv/root.txt",
        user="root",
    )
    sbx.files.write("/srv/crew.txt", "via the group", user="user")
    assert sbx.files.read("/srv/crew.txt", user="user") == "via the group"
    _denied(lambda: sbx.files.write("/srv/root.txt", "no", user="user"))
