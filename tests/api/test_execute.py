"""``POST /execute`` end to end: a real `sandlot serve`, real runner sandboxes on runc, the real
`runner` template's compilers, httpx as the client (the SDK's own tests live in tests/sdk)."""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import slot
from tests._support.server import Server, serving
from tests.internet import CONNECT, PUBLIC, stand_in_internet

HELLO = {
    "python": 'print("hello, world")',
    "javascript": 'console.log("hello, world")',
    "typescript": 'const greeting: string = "hello, world";\nconsole.log(greeting);',
    "rust": 'fn main() {\n    println!("hello, world");\n}',
    "bash": 'echo "hello, world"',
}


def execute(server: Server, **body: Any) -> httpx.Response:
    with server.client() as client:
        return client.post("/execute", json=body)


def ok(server: Server, **body: Any) -> dict[str, Any]:
    answer = execute(server, **body)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_languages_list_every_language_with_its_version(server: Server) -> None:
    with server.client() as client:
        found = client.get("/execute/languages")
    assert found.status_code == 200
    by_name = {item["language"]: item for item in found.json()}
    assert set(by_name) == set(HELLO)
    assert by_name["python"]["version"].startswith("3.")
    assert by_name["rust"]["compiled"] and not by_name["python"]["compiled"]
    assert "py" in by_name["python"]["aliases"]
    for item in by_name.values():
        assert item["version"] and item["version"][0].isdigit(), item


@pytest.mark.parametrize("language", sorted(HELLO))
def test_hello_world(server: Server, language: str) -> None:
    result = ok(server, language=language, code=HELLO[language])
    run = result["run"]
    assert (run["stdout"], run["stderr"], run["exit_code"], run["status"]) == ("hello, world\n", "", 0, "ok"), result
    assert run["wall_ms"] > 0 and run["cpu_ms"] > 0 and run["memory_peak_kb"] > 0 and not run["truncated"]
    with server.client() as client:
        listed = {i["language"]: i["version"] for i in client.get("/execute/languages").json()}
    assert result["language"] == language and result["version"] == listed[language]
    if language in ("rust", "typescript"):
        assert result["compile"]["status"] == "ok" and result["compile"]["exit_code"] == 0
    else:
        assert result["compile"] is None


def test_compile_errors_carry_the_compilers_message(server: Server) -> None:
    rust = ok(server, language="rust", code='fn main() { let x: i32 = "text"; }')
    assert rust["run"] is None
    assert rust["compile"]["status"] == "compile_error" and rust["compile"]["exit_code"] != 0
    assert "mismatched types" in rust["compile"]["stderr"]
    ts = ok(server, language="ts", code='const n: number = "text";\nconsole.log(n);')
    assert ts["run"] is None and ts["compile"]["status"] == "compile_error"
    assert "TS2322" in ts["compile"]["stdout"] + ts["compile"]["stderr"], ts["compile"]


def test_stdin_args_env_and_exit_code(server: Server) -> None:
    code = "import os, sys\nprint(sys.stdin.read().upper(), sys.argv[1:], os.environ['GREETING'])\nsys.exit(3)"
    run = ok(server, language="python", code=code, stdin="abc", args=["x", "y z"], env={"GREETING": "hi"})["run"]
    assert run["stdout"] == "ABC ['x', 'y z'] hi\n"
    assert (run["exit_code"], run["signal"], run["status"]) == (3, None, "runtime_error")


def test_files_and_their_entry_point(server: Server) -> None:
    files = [
        {"name": "app/main.py", "content": "from util import shout\nprint(shout('hi'))"},
        {"name": "app/util.py", "content": "def shout(s):\n    return s.upper() + '!'"},
        {"name": "data.bin", "content": "AAEC", "encoding": "base64"},
    ]
    run = ok(server, language="python", files=files)["run"]
    assert run["stdout"] == "HI!\n", run
    rust = [
        {"name": "main.rs", "content": "mod greet;\nfn main() { greet::hello(); }"},
        {"name": "greet.rs", "content": 'pub fn hello() { println!("from a module"); }'},
    ]
    assert ok(server, language="rust", files=rust)["run"]["stdout"] == "from a module\n"


def test_an_endless_loop_ends_at_the_timeout(server: Server) -> None:
    started = time.monotonic()
    run = ok(server, language="javascript", code="while (true) {}", timeout=1)["run"]
    assert run["status"] == "timeout" and run["signal"] == "SIGKILL" and run["exit_code"] is None
    assert 900 <= run["wall_ms"] < 3000 and time.monotonic() - started < 10
    spinning = ok(server, language="python", code="while True: pass", cpu_time=0.5, timeout=10)["run"]
    assert spinning["status"] == "timeout" and 450 <= spinning["cpu_ms"] < 1500, spinning
    sleeping = ok(server, language="bash", code="sleep 5; echo late", cpu_time=0.5, timeout=1)["run"]
    assert sleeping["status"] == "timeout" and sleeping["stdout"] == "" and sleeping["cpu_ms"] < 500


def test_a_memory_bomb_ends_as_oom(server: Server) -> None:
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    run = ok(server, language="python", code=bomb, memory_mb=128)["run"]
    assert (run["status"], run["signal"]) == ("oom", "SIGKILL"), run
    assert run["memory_peak_kb"] < 200 * 1024
    big = ok(server, language="python", code="print(len(bytearray(100 << 20)))", memory_mb=256)["run"]
    assert big["stdout"] == "104857600\n"


def test_a_fork_bomb_is_contained(server: Server) -> None:
    run = ok(server, language="bash", code="b() { b | b & }; b; sleep 3; echo survived", timeout=3)["run"]
    assert run["status"] in ("timeout", "ok", "runtime_error") and run["wall_ms"] < 6000
    after = ok(server, language="bash", code="set -- /proc/[0-9]*; echo $#")["run"]
    assert after["stdout"] == "2\n", "the next run sees init and itself only"
    with server.client() as client:
        assert client.get("/health").status_code == 200


def test_a_flood_of_output_is_cut_at_the_limit(server: Server) -> None:
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n    sys.stderr.write('y' * 10)"
    run = ok(server, language="python", code=flood, output_limit=10_000)["run"]
    assert run["status"] == "output_limit" and run["truncated"] and run["signal"] == "SIGKILL"
    assert len(run["stdout"]) + len(run["stderr"]) == 10_000
    assert set(run["stdout"]) == {"x"}
    default = ok(server, language="bash", code="yes | head -c 1000000")["run"]
    assert default["truncated"] and len(default["stdout"]) == 65536


@pytest.fixture(scope="module")
def fake_internet() -> Iterator[None]:
    with stand_in_internet():
        yield


@pytest.mark.usefixtures("fake_internet")
def test_the_network_is_off_unless_asked_for(server: Server) -> None:
    probe = {"language": "python", "code": CONNECT, "args": [PUBLIC, "80", "1.0"]}
    off = ok(server, **probe)["run"]
    assert off["stdout"].startswith("blocked"), off
    on = ok(server, **probe, network=True)["run"]
    assert on["stdout"] == "connected hi\n", on
    again = ok(server, **probe)["run"]
    assert again["stdout"].startswith("blocked"), "a run's network is not the next run's"


def test_a_run_leaves_nothing_for_the_next(server: Server) -> None:
    leave = (
        "echo secret > /tmp/left; echo secret > ~/left; echo secret > /dev/shm/left;"
        "export LEFT=1; echo 'export LEFT=1' >> ~/.bashrc; (setsid sleep 600 &) ; echo done"
    )
    assert ok(server, language="bash", code=leave)["run"]["stdout"] == "done\n"
    look = "ls -A /tmp /dev/shm; ls ~; echo LEFT=${LEFT:-}; grep -c LEFT ~/.bashrc; set -- /proc/[0-9]*; echo $#"
    for _ in range(3):  # whichever runner sandbox the next runs get
        seen = ok(server, language="bash", code=look)["run"]["stdout"]
        assert "left" not in seen and "LEFT=\n" in seen and seen.endswith("0\n2\n"), seen


def test_concurrent_runs_cannot_see_each_other(server: Server) -> None:
    writer = "import os, time\nopen('/tmp/mine', 'w').write(str(os.getpid()))\ntime.sleep(2)\nprint(os.listdir('/tmp'))"
    reader = "import os, time\ntime.sleep(0.5)\nprint(os.listdir('/tmp'), os.listdir(os.path.expanduser('~')))"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(ok, server, language="python", code=writer)
        second = pool.submit(ok, server, language="python", code=reader)
        assert first.result()["run"]["stdout"] == "['mine']\n"
        assert "mine" not in second.result()["run"]["stdout"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"language": "cobol", "code": "x"}, "not one of this server's"),
        ({"language": "python", "version": "2.7", "code": "x"}, "python 2.7 is not available"),
        ({"language": "python"}, "exactly one of code and files"),
        ({"language": "python", "code": "x", "files": [{"name": "a.py", "content": "x"}]}, "exactly one"),
        ({"language": "python", "files": [{"name": "../etc/passwd", "content": "x"}]}, "not a file name"),
        ({"language": "python", "files": [{"name": "a.py", "content": "x"}] * 2}, "same name"),
        ({"language": "python", "files": [{"name": "a", "content": "!", "encoding": "base64"}]}, "base64"),
        ({"language": "python", "code": "x", "timeout": 3600}, "timeout: at most 60"),
        ({"language": "python", "code": "x", "timeout": -1}, "timeout"),
        ({"language": "python", "code": "x", "memory_mb": 1 << 20}, "memory_mb: at most"),
        ({"language": "python", "code": "x", "output_limit": 1 << 30}, "output_limit: at most"),
        ({"language": "python", "code": "x", "env": {"1BAD": "x"}}, "not a valid environment variable"),
        ({"language": "python", "code": "x", "args": ["a\x00b"]}, "NUL"),
        ({"language": "python", "code": "x", "surprise": 1}, "surprise"),
    ],
)
def test_bad_requests_say_what_to_fix(server: Server, body: dict[str, Any], says: str) -> None:
    answer = execute(server, **body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 400 and says in answer.json()["message"], answer.json()


def test_a_team_key_is_needed(server: Server) -> None:
    for key in ("", "e2b_" + "0" * 40):
        answer = httpx.post(
            f"{server.url}/execute", json={"language": "bash", "code": "true"}, headers={"X-API-Key": key}
        )
        assert answer.status_code == 401 and answer.json()["code"] == 401
    assert httpx.get(f"{server.url}/execute/languages").status_code == 401


@pytest.fixture(scope="module")
def small_server(data_root: Any, server: Server) -> Iterator[Server]:
    """A server with one runner sandbox, room for one waiting run, and a short wait."""
    settings = {
        "SANDLOT_SPARES": "1",
        "SANDLOT_POOL_MAX": "0",
        "SANDLOT_EXECUTE_POOL_MIN": "1",
        "SANDLOT_EXECUTE_POOL_MAX": "1",
        "SANDLOT_EXECUTE_QUEUE": "1",
        "SANDLOT_EXECUTE_QUEUE_TIMEOUT": "1.5",
    }
    with serving(data_root / "small-server", f"t{os.getpid()}q", slot.subnet(170), settings) as small:
        with small.client() as client:  # the languages' versions are asked at start, with its one runner
            assert all(i["version"] for i in client.get("/execute/languages").json())
        yield small


def test_a_full_queue_answers_429_and_recovers(small_server: Server) -> None:
    slow = {"language": "bash", "code": "sleep 1.2; echo slow"}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(execute, small_server, **slow)
        time.sleep(0.3)
        queued = pool.submit(execute, small_server, **slow)
        time.sleep(0.3)
        refused = execute(small_server, **slow)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert "waiting already" in refused.json()["message"]
        assert running.result().json()["run"]["stdout"] == "slow\n"
        assert queued.result().status_code == 200, "the queued run waited its turn"
    assert ok(small_server, language="bash", code="echo back")["run"]["stdout"] == "back\n"


def test_a_run_that_waits_too_long_gets_503(small_server: Server) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        hog = pool.submit(execute, small_server, language="bash", code="sleep 3")
        time.sleep(0.3)
        waited = execute(small_server, language="bash", code="echo never")
        assert waited.status_code == 503 and "became free" in waited.json()["message"]
        assert hog.result().status_code == 200
    with small_server.client() as client:
        health = client.get("/health").json()
    assert health["status"] == "ok" and health["pools"]["execute-runner"]["maxSize"] == 1
