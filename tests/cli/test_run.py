"""``sandlot run FILE`` end to end: the real command in a subprocess, against a real ``/execute``."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sdk.servers import SdkServer

pytestmark = pytest.mark.slow

SANDLOT = str(Path(sys.executable).parent / "sandlot")


def run(server: SdkServer, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.key, **(env or {})}
    return subprocess.run([SANDLOT, "run", *args], capture_output=True, text=True, env=environ, timeout=120)


def test_a_program_prints_and_exits_as_it_would_here(sdk_server: SdkServer, tmp_path: Path) -> None:
    program = tmp_path / "echo.py"
    program.write_text(
        "import sys, util\nprint(util.shout(input()), sys.argv[1:])\nprint('warn', file=sys.stderr)\nsys.exit(7)"
    )
    (tmp_path / "util.py").write_text("def shout(s):\n    return s.upper()\n")
    (tmp_path / "in.txt").write_text("quiet\n")
    done = run(
        sdk_server, str(program), "--file", str(tmp_path / "util.py"), "--stdin", str(tmp_path / "in.txt"),
        "--", "-x", "y z",
    )
    assert (done.returncode, done.stdout, done.stderr) == (7, "QUIET ['-x', 'y z']\n", "warn\n")
    hello = tmp_path / "hello.sh"
    hello.write_text('echo "hello from $0"')
    shell = run(sdk_server, str(hello))
    assert shell.returncode == 0 and shell.stdout.startswith("hello from")


def test_the_extension_or_lang_picks_the_language(sdk_server: SdkServer, tmp_path: Path) -> None:
    for name, code in {
        "a.js": 'console.log("js")',
        "a.ts": 'const s: string = "ts"; console.log(s)',
        "a.rs": 'fn main() { println!("rs") }',
    }.items():
        (tmp_path / name).write_text(code)
        done = run(sdk_server, str(tmp_path / name))
        assert (done.returncode, done.stdout) == (0, name.split(".")[1] + "\n"), done.stderr
    odd = tmp_path / "script.txt"
    odd.write_text("print('as python')")
    unknown = run(sdk_server, str(odd))
    assert unknown.returncode == 2 and "--lang" in unknown.stderr and "python" in unknown.stderr
    assert run(sdk_server, str(odd), "--lang", "python").stdout == "as python\n"
    bad = run(sdk_server, str(odd), "--lang", "cobol")
    assert bad.returncode == 125 and "cobol" in bad.stderr


def test_limits_and_compile_errors_have_their_own_exit_codes(sdk_server: SdkServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.rs"
    broken.write_text('fn main() { let x: i32 = "no"; }')
    compiled = run(sdk_server, str(broken))
    assert compiled.returncode == 65 and compiled.stdout == ""
    assert "mismatched types" in compiled.stderr and "did not compile" in compiled.stderr
    loop = tmp_path / "loop.py"
    loop.write_text("while True: pass")
    slow = run(sdk_server, str(loop), "--timeout", "1")
    assert slow.returncode == 124 and "time limit" in slow.stderr
    bomb = tmp_path / "bomb.py"
    bomb.write_text("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))")
    oom = run(sdk_server, str(bomb), "--memory", "64")
    assert oom.returncode == 137 and "memory limit" in oom.stderr
    flood = tmp_path / "flood.sh"
    flood.write_text("yes")
    cut = run(sdk_server, str(flood))
    assert cut.returncode == 141 and len(cut.stdout) == 65536 and "output" in cut.stderr
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert run(sdk_server, str(crash)).returncode == 139


def test_json_prints_the_whole_result(sdk_server: SdkServer, tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text("print('x')")
    done = run(sdk_server, str(program), "--json")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["language"] == "python" and result["run"]["stdout"] == "x\n" and result["run"]["status"] == "ok"


def test_sandlot_failures_and_usage_errors(sdk_server: SdkServer, tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text("print('x')")
    assert run(sdk_server, str(tmp_path / "missing.py")).returncode == 2
    no_server = run(sdk_server, str(program), env={"SANDLOT_API_URL": "http://127.0.0.1:1"})
    assert no_server.returncode == 125 and "cannot reach" in no_server.stderr
    bad_key = run(sdk_server, str(program), env={"SANDLOT_API_KEY": "e2b_0000"})
    assert bad_key.returncode == 125


def test_a_server_that_stays_busy_exits_75(small_server: SdkServer, tmp_path: Path) -> None:
    hog, program = tmp_path / "hog.sh", tmp_path / "p.sh"
    # The hog holds the only runner for 10 s. The second run waits in the only place in the
    # queue until its 3 s are up (503); the third is answered 429 until then, and after its
    # retries let it in, it too waits 3 s for a runner in vain. (With a shorter hog the
    # retries would get it a runner: the point of them.)
    hog.write_text("sleep 10")
    program.write_text("echo ran")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(run, small_server, str(hog), "--timeout", "12")
        time.sleep(1.0)
        waiting = pool.submit(run, small_server, str(program))
        time.sleep(1.0)
        started = time.monotonic()
        busy = run(small_server, str(program))
        assert busy.returncode == 75, busy.stderr
        assert time.monotonic() - started >= 2.5, "it gave up before the SDK's retries"
        assert waiting.result().returncode == 75  # its wait for a runner timed out: 503
        assert running.result().returncode == 0
    assert run(small_server, str(program)).stdout == "ran\n"  # and the server recovers
