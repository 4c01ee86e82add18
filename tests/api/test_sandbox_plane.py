"""The sandbox plane against real runc sandboxes: through httpx and through the e2b SDK's envd
layer (a `Sandbox` built on the plane's URL, since these tests run without a control plane)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import statistics
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from e2b import (
    AuthenticationException,
    CommandExitException,
    ConnectionConfig,
    InvalidArgumentException,
    NotFoundException,
    Sandbox,
    TimeoutException,
)
from packaging.version import Version

from sandlot.agent import files
from tests._support.plane import Box, Plane
from tests.conftest import EMPTY, census

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane(data_root: Path) -> Iterator[Plane]:
    p = Plane(data_root / "plane").open()
    try:
        yield p
    finally:
        p.close()
    assert p.driver is not None
    leaks = census(p.driver).leaks_since(EMPTY)
    assert not leaks, f"the plane's driver left host objects behind: {leaks}"


@pytest.fixture(autouse=True)
def plane_leaks(plane: Plane) -> Iterator[None]:
    assert plane.driver is not None
    before = census(plane.driver)
    yield
    for _ in range(40):  # processes a test ended may take a moment to be reaped
        leaks = census(plane.driver).leaks_since(before)
        if not leaks:
            break
        time.sleep(0.05)
    assert not leaks, f"test left host objects behind: {leaks}"


@pytest.fixture(scope="module")
def box(plane: Plane) -> Box:
    return plane.make()


@pytest.fixture(scope="module")
def other(plane: Plane) -> Box:
    return plane.make()


def sdk_config(plane: Plane, box: Box) -> ConnectionConfig:
    """What `Sandbox.create` hands its sandbox (e2b/sandbox_sync/main.py), minus the request."""
    headers = {"E2b-Sandbox-Id": box.sandbox_id, "E2b-Sandbox-Port": "49983"}
    if box.token:
        headers["X-Access-Token"] = box.token
    return ConnectionConfig(api_key="e2b_00", sandbox_url=plane.url, request_timeout=30, extra_sandbox_headers=headers)


def sdk_sandbox(plane: Plane, box: Box) -> Sandbox:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return Sandbox(
            sandbox_id=box.sandbox_id,
            sandbox_domain=None,
            envd_version=Version("0.6.4"),
            envd_access_token=box.token,
            traffic_access_token=None,
            connection_config=sdk_config(plane, box),
        )


@pytest.fixture(scope="module")
def sbx(plane: Plane, box: Box) -> Sandbox:
    return sdk_sandbox(plane, box)


@pytest.fixture
def client(plane: Plane, box: Box) -> Iterator[httpx.Client]:
    headers = {"E2b-Sandbox-Id": box.sandbox_id, "E2b-Sandbox-Port": "49983"}
    if box.token:
        headers["X-Access-Token"] = box.token
    with httpx.Client(base_url=plane.url, headers=headers, timeout=60) as c:
        yield c


def unary(client: httpx.Client, method: str, message: dict, **headers: str) -> httpx.Response:
    return client.post(f"/{method}", json=message, headers=headers)


def stream(client: httpx.Client, method: str, message: dict, **headers: str) -> list[dict]:
    payload = json.dumps(message).encode()
    body = struct.pack(">BI", 0, len(payload)) + payload
    response = client.post(f"/{method}", content=body, headers={"content-type": "application/connect+json", **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/connect+json"
    out, data = [], response.content
    while data:
        flags, length = struct.unpack(">BI", data[:5])
        out.append({"flags": flags, **json.loads(data[5 : 5 + length])})
        data = data[5 + length :]
    return out


# -- commands ---------------------------------------------------------------------------------


def test_run_output_and_exit_code(sbx: Sandbox) -> None:
    result = sbx.commands.run("echo out; echo err >&2; echo 'sp€cial $HOME \"q\" `x`'")
    assert result.stdout == 'out\nsp€cial $HOME "q" `x`\n'
    assert result.stderr == "err\n"
    assert result.exit_code == 0
    with pytest.raises(CommandExitException) as info:
        sbx.commands.run("printf 'a\\nb\\nc'; exit 3")
    assert info.value.exit_code == 3
    assert info.value.stdout == "a\nb\nc"


def test_run_invalid_utf8_survives_as_bytes(client: httpx.Client) -> None:
    events = stream(
        client,
        "process.Process/Start",
        {"process": {"cmd": "/bin/bash", "args": ["-l", "-c", r"printf '\xff\xfe ok\n'"]}, "stdin": False},
    )
    data = b"".join(base64.b64decode(e["event"]["data"]["stdout"]) for e in events if "data" in e.get("event", {}))
    assert data == b"\xff\xfe ok\n"
    assert events[0]["event"]["start"]["pid"] > 0
    assert events[-2]["event"]["end"]["exitCode"] == 0
    assert events[-1] == {"flags": 2}


def test_run_envs_cwd_and_users(sbx: Sandbox) -> None:
    result = sbx.commands.run("echo $A $SANDBOX_ENV; pwd; id -un", envs={"A": "1 2"}, cwd="/tmp")
    assert result.stdout == "1 2 from-create\n/tmp\nuser\n"
    assert sbx.commands.run("id -un; pwd", user="root").stdout == "root\n/root\n"
    assert sbx.commands.run("pwd").stdout == "/home/user\n"


def test_run_timeout_kills_the_command(sbx: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.commands.run("sleep 30; echo never > /tmp/never", timeout=1)
    assert time.monotonic() - started < 10
    time.sleep(0.3)
    assert "sleep 30" not in " ".join(" ".join([p.cmd, *p.args]) for p in sbx.commands.list())


def test_background_connect_list_stdin_kill(sbx: Sandbox) -> None:
    handle = sbx.commands.run("cat; echo done", background=True, stdin=True, timeout=0)
    assert handle.pid in {p.pid for p in sbx.commands.list()}
    sbx.commands.send_stdin(handle.pid, "hello\n")
    handle.disconnect()  # the process goes on running
    again = sbx.commands.connect(handle.pid, timeout=30)
    sbx.commands.send_stdin(handle.pid, "again\n")
    sbx.commands.close_stdin(handle.pid)
    result = again.wait()
    assert result.stdout.endswith("again\ndone\n")

    sleeper = sbx.commands.run("sleep 60", background=True, timeout=0)
    assert sbx.commands.kill(sleeper.pid) is True
    with pytest.raises(CommandExitException) as info:
        sleeper.wait()
    assert info.value.exit_code == -1
    assert sbx.commands.kill(sleeper.pid) is False


def test_list_reports_tag_envs_and_cwd(client: httpx.Client, sbx: Sandbox) -> None:
    handle = sbx.commands.run("sleep 30", background=True, envs={"K": "v"}, cwd="/tmp", timeout=0)
    try:
        listed = {p.pid: p for p in sbx.commands.list()}[handle.pid]
        assert (listed.cmd, listed.args, listed.envs, listed.cwd) == (
            "/bin/bash",
            ["-l", "-c", "sleep 30"],
            {"K": "v"},
            "/tmp",
        )
    finally:
        sbx.commands.kill(handle.pid)


def test_unknown_pid_is_not_found(client: httpx.Client) -> None:
    response = unary(client, "process.Process/SendInput", {"process": {"pid": 999999}, "input": {"stdin": "eA=="}})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    events = stream(client, "process.Process/Connect", {"process": {"pid": 999999}})
    assert events == [{"flags": 2, "error": {"code": "not_found", "message": "process with pid 999999 not found"}}]


def test_pty_interactive_resize_and_exit(sbx: Sandbox) -> None:
    from e2b.sandbox.commands.command_handle import PtySize

    output = bytearray()
    lock = threading.Lock()

    def on_data(data: bytes) -> None:
        with lock:
            output.extend(data)

    exit_codes: list[int] = []

    def wait() -> None:
        try:
            handle.wait(on_pty=on_data)
        except CommandExitException as exc:
            exit_codes.append(exc.exit_code)

    handle = sbx.pty.create(PtySize(rows=24, cols=80), timeout=30)
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    sbx.pty.send_stdin(handle.pid, b"stty size; echo mark-$((6*7))\n")
    deadline = time.monotonic() + 10
    while b"mark-42" not in output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"24 80" in output
    sbx.pty.resize(handle.pid, PtySize(rows=30, cols=100))
    sbx.pty.send_stdin(handle.pid, b"stty size; exit 7\n")
    waiter.join(15)
    assert b"30 100" in output
    assert not waiter.is_alive()
    assert exit_codes == [7]


# -- files ------------------------------------------------------------------------------------


def test_files_read_write_list_stat_remove(sbx: Sandbox, plane: Plane, box: Box) -> None:
    info = sbx.files.write("notes/a.txt", "hello")
    assert info.path == "/home/user/notes/a.txt"
    assert sbx.files.read("/home/user/notes/a.txt") == "hello"
    assert sbx.files.read("notes/a.txt", format="bytes") == bytearray(b"hello")
    entry = sbx.files.get_info("notes/a.txt")
    assert (entry.name, entry.type.value, entry.size, entry.owner) == ("a.txt", "file", 5, "user")
    assert sbx.commands.run("stat -c %U:%G /home/user/notes/a.txt /home/user/notes").stdout == "user:user\nuser:user\n"
    assert sbx.files.make_dir("notes/sub/deeper") is True
    assert sbx.files.make_dir("notes/sub") is False
    sbx.files.write_files([{"path": "notes/sub/b", "data": b"B"}, {"path": "/tmp/c", "data": "C"}])
    assert [e.name for e in sbx.files.list("notes")] == ["a.txt", "sub"]
    assert [e.path for e in sbx.files.list("notes", depth=3)] == [
        "/home/user/notes/a.txt",
        "/home/user/notes/sub",
        "/home/user/notes/sub/b",
        "/home/user/notes/sub/deeper",
    ]
    moved = sbx.files.rename("notes/a.txt", "notes/new/z.txt")
    assert moved.path == "/home/user/notes/new/z.txt"
    assert sbx.files.exists("notes/a.txt") is False
    sbx.files.remove("notes")
    assert sbx.files.exists("notes") is False
    assert sbx.files.read("/tmp/c") == "C"
    with pytest.raises(NotFoundException):
        sbx.files.read("/nope")
    with pytest.raises(InvalidArgumentException):
        sbx.files.read("/tmp")
    root_file = sbx.files.write("/root/r", "x", user="root")
    assert sbx.files.get_info(root_file.path, user="root").owner == "root"


def test_files_symlink_reported_as_link(sbx: Sandbox) -> None:
    sbx.commands.run("mkdir -p /tmp/l && ln -sfn /etc/hostname /tmp/l/link")
    entry = sbx.files.get_info("/tmp/l/link")
    assert entry.symlink_target == "/etc/hostname"
    assert [e.name for e in sbx.files.list("/tmp/l")] == ["link"]


def test_files_gzip_both_ways_and_metadata(client: httpx.Client, sbx: Sandbox) -> None:
    data = b"compress me " * 1000
    response = client.post(
        "/files",
        params={"path": "/tmp/gz"},
        content=gzip.compress(data),
        headers={"content-type": "application/octet-stream", "content-encoding": "gzip", "X-Metadata-Owner": "me"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == [{"name": "gz", "type": "file", "path": "/tmp/gz", "metadata": {"owner": "me"}}]
    raw = client.get("/files", params={"path": "/tmp/gz"}, headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.content == data  # httpx inflates it
    assert sbx.files.get_info("/tmp/gz").metadata == {"owner": "me"}
    sbx.files.write("/tmp/meta", "x", metadata={"k": "v"})
    assert sbx.files.get_info("/tmp/meta").metadata == {"k": "v"}
    bad = client.post("/files", params={"path": "/tmp/x"}, content=b"not gzip", headers={"content-encoding": "gzip"})
    assert bad.status_code == 400


def test_watch_dir_stream_and_polling(sbx: Sandbox) -> None:
    sbx.files.make_dir("/tmp/watched")
    watcher = sbx.files.watch_dir("/tmp/watched", recursive=True)
    sbx.files.write("/tmp/watched/a", "1")
    sbx.commands.run("mkdir /tmp/watched/d && echo x > /tmp/watched/d/f && rm /tmp/watched/a")
    time.sleep(0.5)
    events = {(e.name, e.type.value) for e in watcher.get_new_events()}
    watcher.stop()
    assert {("a", "create"), ("a", "write"), ("d", "create"), ("d/f", "create"), ("a", "remove")} <= events


def test_watch_dir_async_stream(plane: Plane, box: Box) -> None:
    import asyncio

    from e2b import AsyncSandbox

    async def main() -> set[tuple[str, str]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sandbox = AsyncSandbox(
                sandbox_id=box.sandbox_id,
                sandbox_domain=None,
                envd_version=Version("0.6.4"),
                envd_access_token=box.token,
                traffic_access_token=None,
                connection_config=sdk_config(plane, box),
            )
        await sandbox.files.make_dir("/tmp/aw")
        seen: set[tuple[str, str]] = set()
        handle = await sandbox.files.watch_dir("/tmp/aw", on_event=lambda e: seen.add((e.name, e.type.value)))
        await sandbox.files.write("/tmp/aw/f", "1")
        await asyncio.sleep(0.5)
        await handle.stop()
        return seen

    assert ("f", "create") in asyncio.run(main())


def test_signed_urls_and_expiry(plane: Plane, box: Box, sbx: Sandbox) -> None:
    sbx.files.write("/tmp/signed", "secret")
    host = {"Host": f"49983-{box.sandbox_id}.sandlot.test"}
    url = sbx.download_url("/tmp/signed", use_signature_expiration=60)
    query = url.split("?", 1)[1]
    assert httpx.get(f"{plane.url}/files?{query}", headers=host).text == "secret"
    forever = sbx.download_url("/tmp/signed")
    response = httpx.get(f"{plane.url}/files?{forever.split('?', 1)[1]}", headers=host)
    assert response.status_code == 401 and "signature_expiration" in response.json()["message"]
    expired = sbx.download_url("/tmp/signed", use_signature_expiration=1)
    time.sleep(2.1)
    response = httpx.get(f"{plane.url}/files?{expired.split('?', 1)[1]}", headers=host)
    assert response.status_code == 403
    forged = httpx.get(f"{plane.url}/files", params={"path": "/tmp/signed", "signature": "v1_x"}, headers=host)
    assert forged.status_code == 401
    upload = sbx.upload_url("/tmp/up", use_signature_expiration=60)
    assert box.token is not None
    expiration = int(httpx.URL(upload).params["signature_expiration"])
    sig = files.signature("/tmp/up", "write", "", box.token, expiration)
    assert sig in httpx.URL(upload).params["signature"]
    response = httpx.post(f"{plane.url}/files?{upload.split('?', 1)[1]}", headers=host, files={"file": ("up", b"UP")})
    assert response.status_code == 200, response.text
    assert sbx.files.read("/tmp/up") == "UP"


def test_large_file_streams_with_low_memory(client: httpx.Client) -> None:
    size, chunk = 256 * 1024 * 1024, b"\xa5" * (1024 * 1024)
    me = psutil.Process()
    baseline = me.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        response = client.post(
            "/files",
            params={"path": "/tmp/big"},
            content=(chunk for _ in range(size // len(chunk))),
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 200, response.text
        digest = hashlib.sha256()
        total = 0
        with client.stream("GET", "/files", params={"path": "/tmp/big"}, headers={"accept-encoding": "identity"}) as r:
            assert r.headers["content-length"] == str(size)
            for part in r.iter_raw():
                digest.update(part)
                total += len(part)
        assert total == size
        expected = hashlib.sha256()
        for _ in range(size // len(chunk)):
            expected.update(chunk)
        assert digest.hexdigest() == expected.hexdigest()
    finally:
        done.set()
        sampler.join()
        unary(client, "filesystem.Filesystem/Remove", {"path": "/tmp/big"})
    assert peak[0] - baseline < 64 * 1024 * 1024, f"RSS grew by {(peak[0] - baseline) >> 20} MiB"


# -- security ---------------------------------------------------------------------------------


def test_tokens_and_gone_sandboxes(plane: Plane, box: Box, other: Box) -> None:
    def health(sandbox_id: str, token: str | None) -> httpx.Response:
        headers = {"E2b-Sandbox-Id": sandbox_id}
        if token:
            headers["X-Access-Token"] = token
        return httpx.get(f"{plane.url}/health", headers=headers)

    assert health(box.sandbox_id, box.token).status_code == 204
    assert health(other.sandbox_id, box.token).status_code == 401
    assert health(box.sandbox_id, None).status_code == 401
    gone = health("pl-nope", None)
    assert (gone.status_code, gone.json()) == (502, {"code": 502, "message": "The sandbox was not found"})
    with pytest.raises(AuthenticationException):
        sdk_sandbox(plane, Box(other.sandbox_id, box.token, other.target)).commands.run("true")


def test_paths_never_leave_the_sandbox(client: httpx.Client, sbx: Sandbox, data_root: Path) -> None:
    canary = data_root / "canary"
    canary.write_text("host secret")
    os.chmod(canary, 0o644)
    before = canary.stat()
    sbx.commands.run(
        f"mkdir -p /tmp/esc && ln -sfn {canary} /tmp/esc/file && ln -sfn / /tmp/esc/root"
        f" && ln -sfn ../../../../../../../.. /tmp/esc/up"
    )
    tricky = [
        str(canary),
        "/tmp/esc/file",
        f"/tmp/esc/root{canary}",
        f"/tmp/esc/up{canary}",
        f"../../../../../../..{canary}",
        f"/tmp/../../../..{canary}",
    ]
    for path in tricky:
        read = client.get("/files", params={"path": path})
        assert read.status_code in (200, 400, 404), (path, read.status_code)
        assert b"host secret" not in read.content
        write = client.post(
            "/files", params={"path": path}, content=b"pwned", headers={"content-type": "application/octet-stream"}
        )
        assert write.status_code in (200, 400, 404), (path, write.status_code)
        stat = unary(client, "filesystem.Filesystem/Stat", {"path": path})
        assert stat.status_code in (200, 404), (path, stat.status_code)
        listed = unary(client, "filesystem.Filesystem/ListDir", {"path": os.path.dirname(path) or "/"})
        assert listed.status_code in (200, 400, 404)
        unary(client, "filesystem.Filesystem/Move", {"source": path, "destination": "/tmp/moved"})
        unary(client, "filesystem.Filesystem/Remove", {"path": path})
        unary(client, "filesystem.Filesystem/MakeDir", {"path": f"{path}.d"})
    assert canary.read_text() == "host secret"
    after = canary.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_uid) == (before.st_ino, before.st_mtime_ns, before.st_uid)
    assert not Path(f"{canary}.d").exists()
    # a write through the planted link lands inside the sandbox, where the link points there
    sbx.commands.run(f"ln -sfn {canary} /tmp/esc/file")
    sbx.files.write("/tmp/esc/file", "inside")
    assert sbx.commands.run(f"cat {canary}").stdout == "inside"
    assert canary.read_text() == "host secret"


def test_bad_bodies_are_4xx(client: httpx.Client) -> None:
    cases = [
        client.post("/process.Process/List", content=b"{not json", headers={"content-type": "application/json"}),
        client.post("/process.Process/List", content=b"[]", headers={"content-type": "application/json"}),
        client.post("/process.Process/List", content=b"{}", headers={"content-type": "text/plain"}),
        client.post(
            "/process.Process/List", content=b"x" * (17 * 1024 * 1024), headers={"content-type": "application/json"}
        ),
        client.post(
            "/process.Process/Start", content=b"\x00\x00\x00", headers={"content-type": "application/connect+json"}
        ),
        client.post(
            "/process.Process/Start",
            content=b"\x00\xff\xff\xff\xff",
            headers={"content-type": "application/connect+json"},
        ),
        client.post("/filesystem.Filesystem/Stat", json={"path": 5}),
        client.post("/filesystem.Filesystem/Stat", json={"path": "a\u0000b"}),
        client.post("/filesystem.Filesystem/ListDir", json={"path": "/", "depth": "x"}),
        client.post("/process.Process/SendSignal", json={"process": {"pid": 1}, "signal": "SIGNAL_NOPE"}),
        client.post("/process.Process/SendInput", json={"process": {"pid": 1}, "input": {"stdin": "***"}}),
        client.post("/process.Process/List", json={}, headers={"connect-timeout-ms": "abc"}),
        client.post("/process.Process/List", json={}, headers={"authorization": "Bearer x"}),
        client.post(
            "/files",
            params={"path": "/tmp/m"},
            content=b"--x\r\nbroken",
            headers={"content-type": "multipart/form-data; boundary=x"},
        ),
        client.post("/files", content=b"x", headers={"content-type": "application/octet-stream"}),
        client.get("/files"),
        client.get("/nope"),
        client.get("/process.Process/List"),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, (response.request.url, response.status_code, response.text)
        assert "code" in response.json()


def test_proxied_port_and_closed_port(sbx: Sandbox, plane: Plane, box: Box) -> None:
    server = sbx.commands.run(
        "exec python3 -m http.server 8000 --directory /tmp >/dev/null 2>&1", background=True, timeout=0
    )
    try:
        _check_proxy(sbx, plane, box)
    finally:
        sbx.commands.kill(server.pid)
        time.sleep(0.2)


def _check_proxy(sbx: Sandbox, plane: Plane, box: Box) -> None:
    headers = {"E2b-Sandbox-Id": box.sandbox_id, "E2b-Sandbox-Port": "8000", "X-Access-Token": box.token or ""}
    sbx.files.write("/tmp/served.txt", "served")
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{plane.url}/served.txt", headers=headers)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.text == "served"
    closed = httpx.get(f"{plane.url}/", headers={**headers, "E2b-Sandbox-Port": "8001"})
    assert closed.status_code == 502
    assert closed.json()["message"] == "The sandbox is running but port is not open"


def test_run_true_round_trip(sbx: Sandbox) -> None:
    sbx.commands.run("true")
    times = []
    for _ in range(100):
        started = time.perf_counter()
        sbx.commands.run("true")
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(f"commands.run('true') via e2b SDK: p50 {median * 1000:.2f} ms, p99 {sorted(times)[98] * 1000:.2f} ms")
    assert median < 0.1
