"""Lifecycle, command, file and terminal scenarios through e2b 2.45.1 (the v1 routes).

Run by test_e2b_245.py with the interpreter of a separate venv holding e2b==2.45.1, with
E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY pointing at the test server, and a second
team's key as argv[1]. Prints one line per scenario and ``ALL OK`` at the end.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime

import e2b
from e2b import CommandExitException, PtySize, Sandbox
from e2b.exceptions import AuthenticationException, NotFoundException
from e2b.sandbox.sandbox_api import SandboxQuery

assert e2b.__version__ if hasattr(e2b, "__version__") else True
other_key = sys.argv[1]
made: list[str] = []


def left(end_at: datetime) -> float:
    return (end_at - datetime.now(UTC)).total_seconds()


try:
    suite = uuid.uuid4().hex[:8]
    sbx = Sandbox.create(
        timeout=60, metadata={"suite": suite, "k y": "v&1"}, envs={"A": "1"}
    )
    made.append(sbx.sandbox_id)
    info = sbx.get_info()
    assert info.metadata == {"suite": suite, "k y": "v&1"}, info.metadata
    assert 50 < left(info.end_at) <= 61, info.end_at
    print("create+info ok")

    for i in range(2):
        made.append(
            Sandbox.create(
                timeout=60, metadata={"suite": suite, "n": str(i)}
            ).sandbox_id
        )
    paginator = Sandbox.list(query=SandboxQuery(metadata={"suite": suite}), limit=2)
    first = paginator.next_items()
    assert len(first) == 2 and paginator.has_next
    second = paginator.next_items()
    assert len(second) == 1 and not paginator.has_next
    assert sorted(s.sandbox_id for s in first + second) == sorted(made)
    only = Sandbox.list(query=SandboxQuery(metadata={"k y": "v&1"})).next_items()
    assert [s.sandbox_id for s in only] == [sbx.sandbox_id]
    print("list ok")

    sbx.set_timeout(300)
    assert 290 < left(sbx.get_info().end_at) <= 301
    print("set_timeout ok")

    [metric] = sbx.get_metrics()
    assert metric.mem_total > 0 and metric.disk_total > 0
    print("metrics ok")

    end = sbx.get_info().end_at
    again = Sandbox.connect(sbx.sandbox_id, timeout=10)
    assert again.sandbox_id == sbx.sandbox_id and sbx.get_info().end_at == end
    print("connect ok")

    try:
        Sandbox.get_info(sbx.sandbox_id, api_key=other_key)
        raise AssertionError("another team saw the sandbox")
    except NotFoundException:
        pass
    assert Sandbox.kill(sbx.sandbox_id, api_key=other_key) is False
    print("other team ok")

    try:
        Sandbox.create(api_key="e2b_" + "0" * 40)
        raise AssertionError("a wrong key created a sandbox")
    except AuthenticationException:
        pass
    print("401 ok")

    # Commands, files and a terminal through 2.45.1's envd layer.
    run = sbx.commands.run("echo hello; echo oops >&2; printf '%s' \"ü $HOME\"")
    assert (run.stdout, run.stderr, run.exit_code) == ("hello\nü /home/user", "oops\n", 0), run
    try:
        sbx.commands.run("exit 3")
        raise AssertionError("a failing command did not raise")
    except CommandExitException as exc:
        assert exc.exit_code == 3
    who = sbx.commands.run("echo $X $(pwd) $(id -un)", envs={"X": "1"}, cwd="/tmp", user="root")
    assert who.stdout == "1 /tmp root\n", who.stdout
    cat = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.send_stdin(cat.pid, "fed\n")
    sbx.commands.close_stdin(cat.pid)
    assert cat.wait().stdout == "fed\n"
    sleeper = sbx.commands.run("sleep 60", background=True)
    assert sleeper.pid in [p.pid for p in sbx.commands.list()]
    assert sbx.commands.kill(sleeper.pid) is True
    print("commands ok")

    sbx.files.write("/home/user/f.txt", "data")
    assert sbx.files.read("/home/user/f.txt") == "data"
    assert "f.txt" in [e.name for e in sbx.files.list("/home/user")]
    sbx.files.make_dir("/home/user/d")
    sbx.files.rename("/home/user/f.txt", "/home/user/d/g.txt")
    assert sbx.files.exists("/home/user/d/g.txt") and not sbx.files.exists("/home/user/f.txt")
    sbx.files.remove("/home/user/d")
    assert not sbx.files.exists("/home/user/d")
    print("files ok")

    seen = bytearray()
    terminal = sbx.pty.create(PtySize(rows=24, cols=80))
    sbx.pty.send_stdin(terminal.pid, b"stty size; exit\n")
    assert terminal.wait(on_pty=seen.extend).exit_code == 0
    assert b"24 80" in seen, bytes(seen)
    print("pty ok")

    assert sbx.kill() is True and Sandbox.kill(sbx.sandbox_id) is False
    try:
        sbx.get_info()
        raise AssertionError("killed sandbox still there")
    except NotFoundException:
        pass
    print("kill ok")

    short = Sandbox.create(timeout=2)
    made.append(short.sandbox_id)
    time.sleep(3.5)
    try:
        short.get_info()
        raise AssertionError("expired sandbox still there")
    except NotFoundException:
        pass
    print("timeout ok")
    print("ALL OK")
finally:
    for sid in made:
        Sandbox.kill(sid)
