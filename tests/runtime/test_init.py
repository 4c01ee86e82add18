"""sandlot-init, compiled and run directly on the host (no container), driven through InitClient.

Off PID 1, init is a child subreaper, so orphan reaping is testable here; it listens on
127.0.0.1 and looks users up in the host's /etc/passwd. Every test gets its own init; the
fixture checks afterwards that init holds no fd it did not start with and that nothing it
started outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import pwd
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sandlot.runtime import base, errors, initbin, initproto, models

TOKEN = b"s3cret-token"
INIT_ENV = {"INIT_ONLY": "from-init", "SHARED": "from-init", "SANDLOT_INIT_SECRET": "hidden"}
INIT_OWN_FDS = 6
"""/dev/null on 0-2, the signalfd, the listening socket and the /dev/null kept for children."""
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- /proc ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a live or zombie process, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _all_stats() -> dict[int, tuple[str, int, int]]:
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _proc_stat(int(name))) is not None:
            stats[int(name)] = stat
    return stats


def _descendants(root: int) -> dict[int, int]:
    """Every process whose parent chain leads to ``root``, with its start time."""
    stats = _all_stats()
    found: dict[int, int] = {}
    for pid in stats:
        chain, cursor = [], pid
        while cursor in stats and cursor not in (0, 1, root):
            chain.append(cursor)
            cursor = stats[cursor][1]
        if cursor == root:
            found.update((p, stats[p][2]) for p in chain)
    return found


def _children(pid: int) -> list[int]:
    return [child for child, (_, ppid, _) in _all_stats().items() if ppid == pid]


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fd_links(pid: int) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    return [f"{fd.name} -> {os.readlink(fd)}" for fd in sorted(fds.iterdir())]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _eventually(check: Callable[[], bool], message: str | Callable[[], str], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(message if isinstance(message, str) else message())
        await asyncio.sleep(0.02)


# -- fixtures ---------------------------------------------------------------------------------


@dataclasses.dataclass
class RunningInit:
    process: subprocess.Popen[bytes]
    port: int
    clients: list[initproto.InitClient] = dataclasses.field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, token: bytes = TOKEN) -> initproto.InitClient:
        client = initproto.InitClient("127.0.0.1", self.port, token)
        self.clients.append(client)
        return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(binary: Path, prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], int]:
    """Start init on a free port and wait for its ready byte (retrying if the port was taken)."""
    for _ in range(5):
        port = _free_port()
        token_r, token_w = os.pipe()
        os.write(token_w, TOKEN)
        os.close(token_w)
        ready_r, ready_w = os.pipe()
        try:
            argv = [str(binary), "--listen", f"127.0.0.1:{port}", "--token-fd", str(token_r)]
            process = subprocess.Popen(
                [*prefix, *argv, "--ready-fd", str(ready_w)],
                pass_fds=(token_r, ready_w),
                env=INIT_ENV,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(token_r)
            os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            readable, _, _ = select.select([ready], [], [], 5)
            byte = ready.read(1) if readable else b""
        if byte == b"1":
            assert process.stderr is not None
            process.stderr.close()
            return process, port
        process.kill()
        _, stderr = process.communicate()
        if b"Address already in use" not in stderr:
            raise RuntimeError(f"sandlot-init did not start: {stderr.decode()}")
    raise RuntimeError("no free port for sandlot-init")


@pytest.fixture(scope="session")
def init_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return initbin.ensure_init_binary(tmp_path_factory.mktemp("cache"))


@pytest.fixture
async def init(init_binary: Path) -> AsyncIterator[RunningInit]:
    process, port = _launch(init_binary)
    running = RunningInit(process, port)
    try:
        yield running
        for client in running.clients:
            await client.aclose()
        async with initproto.InitClient("127.0.0.1", port, TOKEN) as admin:
            for info in await admin.list():
                with contextlib.suppress(errors.ProcessNotFound):
                    await admin.signal(info.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while await admin.list():
                assert time.monotonic() < deadline, "processes survived SIGKILL"
                await asyncio.sleep(0.02)
        await _eventually(
            lambda: _fd_count(process.pid) == INIT_OWN_FDS,
            lambda: f"init leaked file descriptors: {_fd_links(process.pid)}",
        )
    finally:
        started = _descendants(process.pid)
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(5)
        survivors = []
        deadline = time.monotonic() + 2
        for pid, start in started.items():
            while (stat := _proc_stat(pid)) is not None and stat[2] == start:
                if time.monotonic() > deadline:
                    survivors.append(pid)
                    os.kill(pid, signal.SIGKILL)
                    break
                await asyncio.sleep(0.02)
    assert returncode == 0
    assert not survivors, f"processes outlived init: {survivors}"


@pytest.fixture
def client(init: RunningInit) -> initproto.InitClient:
    return init.client()


def spec(*argv: str, **kwargs: object) -> models.ProcessSpec:
    kwargs.setdefault("user", "root")
    return models.ProcessSpec(argv=argv, **kwargs)  # type: ignore[arg-type]


async def collect(proc: base.Process) -> tuple[bytes, bytes, models.ExitStatus]:
    """All of stdout and stderr, and the exit, within a few seconds."""
    out, err = bytearray(), bytearray()

    async def read() -> models.ExitStatus:
        async for stream, data in proc.output():
            (out if stream == base.OutputStream.STDOUT else err).extend(data)
        return await proc.wait()

    status = await asyncio.wait_for(read(), 10)
    return bytes(out), bytes(err), status


async def read_until(chunks: AsyncIterator[tuple[base.OutputStream, bytes]], needle: bytes) -> bytes:
    seen = b""
    async with asyncio.timeout(5):
        async for _, data in chunks:
            seen += data
            if needle in seen:
                return seen
    raise AssertionError(f"{needle!r} never came; got {seen!r}")


# -- running processes ------------------------------------------------------------------------


async def test_echo_output(client: initproto.InitClient) -> None:
    out, err, status = await collect(await client.spawn(spec("echo", "hello", "world")))
    assert (out, err, status) == (b"hello world\n", b"", models.ExitStatus(exit_code=0))


async def test_stdout_and_stderr_are_separate(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-c", "echo out; echo err >&2; echo out2"))
    out, err, _ = await collect(proc)
    assert out == b"out\nout2\n"
    assert err == b"err\n"


@pytest.mark.parametrize("code", [0, 1, 42, 255])
async def test_exit_code(client: initproto.InitClient, code: int) -> None:
    _, _, status = await collect(await client.spawn(spec("sh", "-c", f"exit {code}")))
    assert status == models.ExitStatus(exit_code=code)
    assert status.ok == (code == 0)


async def test_stdin_is_written_then_closed(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("cat", stdin=True))
    await proc.write_stdin(b"hello ")
    await proc.write_stdin(b"cat\n")
    await proc.close_stdin()
    assert await collect(proc) == (b"hello cat\n", b"", models.ExitStatus(exit_code=0))


async def test_stdin_through_the_control_connection(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("cat", stdin=True))
    await client.write_stdin(proc.pid, b"via control\n")
    await client.close_stdin(proc.pid)
    assert (await collect(proc))[0] == b"via control\n"


async def test_stdin_larger_than_a_frame_round_trips(client: initproto.InitClient) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    proc = await client.spawn(spec("cat", stdin=True))

    async def feed() -> None:
        await proc.write_stdin(data)
        await proc.close_stdin()

    feeder = asyncio.create_task(feed())
    out, _, status = await collect(proc)
    await feeder
    assert out == data and status.ok


async def test_stdin_reads_empty_unless_kept_open(client: initproto.InitClient) -> None:
    out, _, status = await collect(await client.spawn(spec("cat")))
    assert (out, status) == (b"", models.ExitStatus(exit_code=0))


async def test_signal_kills_process(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sleep", "30"))
    await proc.signal(signal.SIGTERM)
    assert await collect(proc) == (b"", b"", models.ExitStatus(exit_code=None, signal=signal.SIGTERM))


async def test_signal_reaches_the_whole_process_group(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-c", "sleep 30; echo not killed"))
    await asyncio.sleep(0.1)
    await client.signal(proc.pid, signal.SIGKILL)
    out, _, status = await collect(proc)
    assert status.signal == signal.SIGKILL
    assert out == b""


async def test_unknown_pid_is_process_not_found(client: initproto.InitClient) -> None:
    with pytest.raises(errors.ProcessNotFound):
        await client.signal(999_999, signal.SIGTERM)
    with pytest.raises(errors.ProcessNotFound):
        await client.attach(999_999)
    with pytest.raises(errors.ProcessNotFound):
        await client.write_stdin(999_999, b"x")


# -- pty --------------------------------------------------------------------------------------


async def test_pty_reports_requested_size(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-c", "stty size; test -t 0 && test -t 1", pty=models.PtySize(30, 100)))
    out, err, status = await collect(proc)
    assert out == b"30 100\r\n"
    assert (err, status) == (b"", models.ExitStatus(exit_code=0))


async def test_pty_resize_in_interactive_shell(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-i", pty=models.PtySize(24, 80), env={"PS1": "$ "}))
    async with contextlib.aclosing(proc.output()) as chunks:
        await proc.write_stdin(b"stty size\n")
        await read_until(chunks, b"24 80")
        await proc.resize(models.PtySize(40, 120))
        await proc.write_stdin(b"stty size\n")
        await read_until(chunks, b"40 120")
        await client.resize(proc.pid, models.PtySize(50, 132))
        await proc.write_stdin(b"stty size\n")
        await read_until(chunks, b"50 132")
        await proc.write_stdin(b"echo $((6 * 7)); exit 3\n")
        await read_until(chunks, b"42")
        async for _ in chunks:
            pass
    assert await proc.wait() == models.ExitStatus(exit_code=3)


async def test_pty_close_stdin_sends_eof(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("cat", pty=models.PtySize()))
    await proc.write_stdin(b"line\n")
    await proc.close_stdin()
    out, _, status = await collect(proc)
    assert b"line\r\n" in out and status.ok


async def test_resize_without_pty_is_an_error(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sleep", "30"))
    with pytest.raises(errors.RuntimeDriverError, match="ENOTTY"):
        await client.resize(proc.pid, models.PtySize(10, 10))
    await proc.signal(signal.SIGKILL)
    await collect(proc)


# -- environment, cwd, user -------------------------------------------------------------------


def _parse_env(out: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


async def test_environment_merges_init_user_and_request(client: initproto.InitClient) -> None:
    out, _, _ = await collect(await client.spawn(spec("env", env={"SHARED": "from-request", "EXTRA": "x"})))
    env = _parse_env(out)
    root = pwd.getpwnam("root")
    assert env["SHARED"] == "from-request"
    assert env["INIT_ONLY"] == "from-init"
    assert env["EXTRA"] == "x"
    assert "SANDLOT_INIT_SECRET" not in env
    assert (env["HOME"], env["USER"], env["LOGNAME"], env["SHELL"]) == ("/root", "root", "root", root.pw_shell)
    assert env["PATH"] == STANDARD_PATH
    assert "TERM" not in env


async def test_environment_request_wins_over_user_and_pty_default(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("env", env={"HOME": "/elsewhere"}, pty=models.PtySize()))
    env = _parse_env((await collect(proc))[0].replace(b"\r\n", b"\n"))
    assert env["HOME"] == "/elsewhere"
    assert env["TERM"] == "xterm-256color"


async def test_cwd(client: initproto.InitClient, tmp_path: Path) -> None:
    assert (await collect(await client.spawn(spec("pwd", cwd=str(tmp_path)))))[0] == f"{tmp_path}\n".encode()
    assert (await collect(await client.spawn(spec("pwd"))))[0] == b"/root\n"


async def test_runs_as_another_user(client: initproto.InitClient) -> None:
    nobody = pwd.getpwnam("nobody")
    script = 'id -u; id -g; echo "$HOME $USER"; pwd'
    out, _, status = await collect(await client.spawn(spec("sh", "-c", script, user="nobody")))
    # nobody's home (/nonexistent) is missing, so it starts in / as login does.
    assert out.decode().splitlines() == [str(nobody.pw_uid), str(nobody.pw_gid), f"{nobody.pw_dir} nobody", "/"]
    assert status.ok


async def test_numeric_uid_without_passwd_entry(client: initproto.InitClient) -> None:
    out, _, _ = await collect(await client.spawn(spec("sh", "-c", 'id -u; id -g; echo "$HOME"', user="54321")))
    assert out.decode().splitlines() == ["54321", "54321", "/"]


async def test_supplementary_groups_come_from_etc_group(client: initproto.InitClient) -> None:
    out, _, _ = await collect(await client.spawn(spec("id", "-G")))
    expected = {0} | {
        int(line.split(":")[2])
        for line in Path("/etc/group").read_text().splitlines()
        if "root" in line.split(":")[3].split(",")
    }
    assert set(map(int, out.split())) == expected


# -- spawn failures ---------------------------------------------------------------------------


async def test_missing_program_is_start_error(init: RunningInit, client: initproto.InitClient) -> None:
    with pytest.raises(errors.ProcessStartError) as excinfo:
        await client.spawn(spec("/no/such/program"))
    assert excinfo.value.errno == errno.ENOENT
    assert "/no/such/program" in str(excinfo.value)
    assert await client.list() == []
    await _eventually(lambda: _children(init.pid) == [], "the failed child was not reaped")


async def test_missing_program_on_path_is_start_error(client: initproto.InitClient) -> None:
    with pytest.raises(errors.ProcessStartError) as excinfo:
        await client.spawn(spec("no-such-program-anywhere"))
    assert excinfo.value.errno == errno.ENOENT


async def test_missing_cwd_is_start_error(client: initproto.InitClient) -> None:
    with pytest.raises(errors.ProcessStartError) as excinfo:
        await client.spawn(spec("true", cwd="/no/such/dir"))
    assert excinfo.value.errno == errno.ENOENT
    assert "/no/such/dir" in str(excinfo.value)


async def test_unknown_user_is_start_error(client: initproto.InitClient) -> None:
    with pytest.raises(errors.ProcessStartError, match="no-such-user"):
        await client.spawn(spec("true", user="no-such-user"))


# -- list and attach --------------------------------------------------------------------------


async def test_list_shows_running_processes(client: initproto.InitClient) -> None:
    first = await client.spawn(spec("sleep", "30", tag="first", cwd="/tmp"))
    second = await client.spawn(spec("sleep", "31", tag="second", pty=models.PtySize()))
    listed = {info.pid: info for info in await client.list()}
    assert listed == {
        first.pid: models.ProcessInfo(pid=first.pid, argv=("sleep", "30"), cwd="/tmp", pty=False, tag="first"),
        second.pid: models.ProcessInfo(pid=second.pid, argv=("sleep", "31"), cwd="/root", pty=True, tag="second"),
    }
    await first.signal(signal.SIGKILL)
    await first.wait()
    assert [info.pid for info in await client.list()] == [second.pid]
    await second.signal(signal.SIGKILL)
    await second.wait()


async def test_attach_from_second_connection(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-c", "read x; echo got $x; exit 5", stdin=True))
    other = await client.attach(proc.pid)
    await client.write_stdin(proc.pid, b"hi\n")
    results = await asyncio.gather(collect(proc), collect(other))
    assert results[0] == results[1] == (b"got hi\n", b"", models.ExitStatus(exit_code=5))


async def test_closing_a_stream_leaves_the_process_running(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-c", "read x; echo after $x", stdin=True, tag="detached"))
    await proc.aclose()
    assert [info.tag for info in await client.list()] == ["detached"]
    again = await client.attach(proc.pid)
    await again.write_stdin(b"reattach\n")
    assert await collect(again) == (b"after reattach\n", b"", models.ExitStatus(exit_code=0))


async def test_control_connection_is_reopened_after_it_broke(client: initproto.InitClient) -> None:
    await client.ping()
    control = client._control
    assert control is not None
    control.writer.transport.abort()  # as when the daemon drops connections for a checkpoint
    await client.ping()
    assert client._control is not control


# -- output flow ------------------------------------------------------------------------------


async def test_flood_arrives_complete_under_backpressure(init: RunningInit, client: initproto.InitClient) -> None:
    total = 50_000_000
    proc = await client.spawn(spec("sh", "-c", f"yes | head -c {total}"))
    pattern = b"y\n" * (initproto.MAX_DATA // 2 + 2)
    received, peak_rss, still_running = 0, 0, False
    slow_until = time.monotonic() + 1
    async for stream, data in proc.output():
        assert stream == base.OutputStream.STDOUT
        assert data == pattern[received % 2 : received % 2 + len(data)], f"out of order at byte {received}"
        received += len(data)
        if time.monotonic() < slow_until:  # a slow reader for the first second
            await asyncio.sleep(0.01)
            peak_rss = max(peak_rss, _rss_bytes(init.pid))
        elif not still_running:
            # Without backpressure `yes | head` would have finished long ago.
            still_running = proc.pid in [info.pid for info in await client.list()]
            assert still_running, "the producer was not held back by the slow reader"
    assert received == total
    assert (await proc.wait()).ok
    assert peak_rss < 64 * 1024 * 1024


async def test_output_left_in_pipes_at_exit_is_delivered(client: initproto.InitClient) -> None:
    # Nobody reads for a while, so init stops reading the pipes and `head` blocks; when it is
    # killed and `sh` exits, what is still in the pipes (END among it) must come all the same.
    script = "head -c 100000000 /dev/zero & sleep 0.5; kill $!; echo END >&2"
    proc = await client.spawn(spec("sh", "-c", script))
    await asyncio.sleep(1)
    out, err, status = await collect(proc)
    assert err == b"END\n"
    assert status.ok and len(out) > 1024 * 1024 and out.count(0) == len(out)


async def test_output_nobody_reads_does_not_block_the_process(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-c", "yes | head -c 20000000"))
    pid = proc.pid
    await proc.aclose()
    deadline = time.monotonic() + 10
    while pid in [info.pid for info in await client.list()]:
        assert time.monotonic() < deadline, "the process blocked on output nobody reads"
        await asyncio.sleep(0.05)


async def test_grandchild_holding_the_pipe_does_not_delay_exit(client: initproto.InitClient) -> None:
    proc = await client.spawn(spec("sh", "-c", "sleep 5 & echo started"))
    started = time.monotonic()
    out, _, status = await collect(proc)
    assert (out, status) == (b"started\n", models.ExitStatus(exit_code=0))
    assert time.monotonic() - started < 2


async def test_orphans_are_reaped(init: RunningInit, client: initproto.InitClient) -> None:
    out, _, _ = await collect(await client.spawn(spec("sh", "-c", "sleep 0.5 & echo $!; exit 0")))
    orphan = int(out)
    stat = _proc_stat(orphan)
    assert stat is not None and stat[1] == init.pid, "the orphan was not reparented to init"
    await _eventually(lambda: _children(init.pid) == [], "the orphan was left a zombie")


# -- protocol abuse ---------------------------------------------------------------------------


async def _raw_connection(init: RunningInit, hello: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", init.port)
    if hello:
        writer.write(initproto.encode_frame(initproto.FrameType.HELLO, TOKEN))
        assert await initproto.read_frame(reader) == (initproto.FrameType.OK, b"")
    return reader, writer


async def _assert_closed_by_init(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        assert await asyncio.wait_for(reader.read(), 3) == b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_wrong_token_closes_connection_and_spawns_nothing(init: RunningInit, tmp_path: Path) -> None:
    marker = tmp_path / "spawned"
    reader, writer = await _raw_connection(init, hello=False)
    writer.write(initproto.encode_frame(initproto.FrameType.HELLO, b"wrong"))
    writer.write(initproto.encode_frame(initproto.FrameType.SPAWN, initproto.encode_spawn(spec("touch", str(marker)))))
    await _assert_closed_by_init(reader, writer)
    with pytest.raises(errors.RuntimeDriverError, match="wrong token"):
        await init.client(token=TOKEN + b"x").ping()
    await asyncio.sleep(0.2)
    assert not marker.exists()
    assert _children(init.pid) == []


def _frame(type_: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", len(payload) + 1, type_) + payload


MALFORMED = {
    "zero length": b"\x00\x00\x00\x00",
    "oversized": struct.pack(">IB", initproto.MAX_FRAME + 1, initproto.FrameType.PING),
    "unknown type": _frame(0x7F),
    "truncated spawn": _frame(initproto.FrameType.SPAWN, b"\x00\x00"),
    "string past the end": _frame(initproto.FrameType.SPAWN, struct.pack(">BHHI", 0, 0, 0, 1000) + b"root"),
    "empty argv": _frame(
        initproto.FrameType.SPAWN,
        struct.pack(">BHH", 0, 0, 0) + initproto.encode_str("root") + b"\0" * 8 + initproto.encode_list([]) * 2,
    ),
    "ping with payload": _frame(initproto.FrameType.PING, b"extra"),
    "stream frame on control": _frame(initproto.FrameType.STREAM_STDIN, b"data"),
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_frame_closes_only_that_connection(
    init: RunningInit, client: initproto.InitClient, frame: bytes
) -> None:
    await client.ping()
    reader, writer = await _raw_connection(init)
    writer.write(frame)
    await _assert_closed_by_init(reader, writer)
    await client.ping()
    assert (await collect(await client.spawn(spec("echo", "still serving"))))[0] == b"still serving\n"


async def test_oversized_frame_before_hello_closes(init: RunningInit) -> None:
    reader, writer = await _raw_connection(init, hello=False)
    writer.write(struct.pack(">IB", 1000, initproto.FrameType.HELLO))
    await _assert_closed_by_init(reader, writer)


# -- as PID 1 ---------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
async def test_as_pid1_sigterm_ends_every_process(init_binary: Path) -> None:
    process, port = _launch(init_binary, prefix=("unshare", "--pid", "--fork", "--kill-child", "--mount-proc"))
    try:
        (init_pid,) = _children(process.pid)  # unshare's child is the namespace's PID 1
        async with initproto.InitClient("127.0.0.1", port, TOKEN) as client:
            # Ignores SIGTERM (and so do its children), so only the SIGKILL after 2 s ends it.
            stubborn = await client.spawn(spec("sh", "-c", "trap '' TERM; sleep 1000 & echo up; sleep 1000"))
            async with contextlib.aclosing(stubborn.output()) as chunks:
                await read_until(chunks, b"up")
            await stubborn.aclose()
            assert [info.pid for info in await client.list()] == [stubborn.pid]
            assert stubborn.pid == 2  # a pid of the namespace, not of the host
        await _eventually(lambda: len(_descendants(init_pid)) == 3, "sh and its two sleeps did not start")
        started = _descendants(init_pid)
        since = time.monotonic()
        os.kill(init_pid, signal.SIGTERM)
        assert process.wait(10) == 0
        assert 1.5 < time.monotonic() - since < 5
        assert all(_proc_stat(pid) is None for pid in started)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
