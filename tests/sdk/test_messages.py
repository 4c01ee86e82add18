"""Control-plane, process and filesystem messages: what the SDK sends and how it reads answers."""

from __future__ import annotations

import datetime
import json
import urllib.parse

import httpx
import pytest

from sandlot.sdk import exceptions
from sandlot.sdk._core import api, filesystem, models, process
from sandlot.sdk._core.config import ConnectionConfig

DETAIL = json.dumps(
    {
        "templateID": "base",
        "sandboxID": "s1",
        "clientID": "c",
        "envdVersion": "0.6.4",
        "startedAt": "2025-01-02T03:04:05.123456789Z",
        "endAt": "2025-01-02T03:09:05Z",
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 1024,
        "state": "running",
        "metadata": {"job": "42"},
        "envdAccessToken": "tok",
        "domain": "sandlot.local",
    }
).encode()


# ------------------------------------------------------------------------ control plane


def test_create_sends_only_given_keys() -> None:
    request = api.create_sandbox()
    assert (request.method, request.path) == ("POST", "/v2/sandboxes")
    assert request.json == {"templateID": "base", "metadata": {}, "envVars": {}}
    request = api.create_sandbox(
        template="py", timeout=60, metadata={"a": "b"}, envs={"X": "1"}, secure=False, allow_internet_access=False
    )
    assert request.json == {
        "templateID": "py",
        "metadata": {"a": "b"},
        "envVars": {"X": "1"},
        "timeout": 60,
        "secure": False,
        "allow_internet_access": False,
    }
    with pytest.raises(exceptions.InvalidArgumentError):
        api.create_sandbox(timeout=-1)


def test_ids_cannot_climb_out_of_their_path_segment() -> None:
    assert api.get_sandbox("a b").path == "/sandboxes/a%20b"
    for bad in ("", "..", "a/b"):
        with pytest.raises(exceptions.InvalidArgumentError):
            api.kill_sandbox(bad)


def test_connect_never_sends_a_timeout_unless_asked() -> None:
    assert api.connect_sandbox("s1").json == {}
    assert api.connect_sandbox("s1", timeout=30).json == {"timeout": 30}
    assert api.connect_sandbox("s1").path == "/v2/sandboxes/s1/connect"


def test_metadata_filter_is_three_layers_deep_on_the_wire() -> None:
    request = api.list_sandboxes(metadata={"k y": "v&1"}, state=["running", "paused"], limit=5)
    url = httpx.URL("http://h/v2/sandboxes", params=request.params)
    assert b"metadata=k%252520y%3Dv%2525261" in url.raw_path  # exactly what the e2b SDK sends
    # and the decoding a server does gets the pair back
    value = urllib.parse.parse_qs(url.query.decode())["metadata"][0]
    pairs = {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, v in urllib.parse.parse_qsl(value)}
    assert pairs == {"k y": "v&1"}
    assert request.params["state"] == "running,paused"
    assert request.params["limit"] == "5"
    with pytest.raises(exceptions.InvalidArgumentError):
        api.list_sandboxes(order="sideways")


def test_parse_handle_and_info() -> None:
    handle = api.parse_handle(201, {}, DETAIL)
    assert handle == api.SandboxHandle("s1", "base", "0.6.4", "tok", "sandlot.local")
    info = api.parse_info(200, {}, DETAIL)
    assert info.started_at == datetime.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC)
    assert (info.state, info.cpu_count, info.memory_mb, info.metadata) == ("running", 2, 512, {"job": "42"})
    with pytest.raises(exceptions.ProtocolError):
        api.parse_info(200, {}, b'{"sandboxID":"s1"}')
    with pytest.raises(exceptions.ProtocolError):
        api.parse_info(200, {}, b"not json")


def test_parse_list_reads_the_next_token_header() -> None:
    items, token = api.parse_list(200, httpx.Headers({"X-Next-Token": "abc"}), b"[" + DETAIL + b"]")
    assert [i.sandbox_id for i in items] == ["s1"]
    assert token == "abc"
    assert api.parse_list(200, {}, b"[]") == ([], None)


def test_control_plane_errors() -> None:
    with pytest.raises(exceptions.SandboxNotFoundError):
        api.parse_info(404, {}, b'{"code":404,"message":"sandbox s1 not found"}')
    with pytest.raises(exceptions.AuthenticationError, match="invalid API key"):
        api.parse_handle(401, {}, b'{"code":401,"message":"invalid API key"}')
    with pytest.raises(exceptions.UnsupportedError):
        api.parse_empty(501, {}, b'{"code":501,"message":"pause is not implemented"}')
    assert api.parse_kill(204, {}, b"") is True
    assert api.parse_kill(404, {}, b'{"code":404,"message":"gone"}') is False


def test_create_sends_lifecycle_options_as_e2b_and_the_contract_spell_them() -> None:
    request = api.create_sandbox(template="warm:v2", auto_pause=True, auto_resume=False, idle_timeout=90)
    assert request.json == {
        "templateID": "warm:v2",
        "metadata": {},
        "envVars": {},
        "autoPause": True,
        "autoResume": {"enabled": False},
        "idleTimeout": 90,
    }
    assert "autoResume" not in api.create_sandbox().json
    with pytest.raises(exceptions.InvalidArgumentError):
        api.create_sandbox(idle_timeout=-5)


def test_info_reads_boot_lifecycle_and_idle_timeout() -> None:
    detail = json.loads(DETAIL) | {
        "boot": "fork",
        "lifecycle": {"autoResume": True, "onTimeout": "pause"},
        "idleTimeout": 120,
    }
    info = api.parse_info(200, {}, json.dumps(detail).encode())
    assert info.boot == "fork"
    assert info.lifecycle == models.SandboxLifecycle(auto_resume=True, on_timeout="pause")
    assert info.idle_timeout == 120
    bare = api.parse_info(200, {}, DETAIL)  # an older server says none of it
    assert (bare.boot, bare.lifecycle, bare.idle_timeout) == (None, None, None)
    with pytest.raises(exceptions.ProtocolError):
        api.parse_info(200, {}, json.dumps(json.loads(DETAIL) | {"lifecycle": {"onTimeout": "kill"}}).encode())


def test_a_404_to_create_is_a_missing_template_not_a_missing_sandbox() -> None:
    with pytest.raises(exceptions.TemplateNotFoundError, match="warm:v9"):
        api.parse_created(404, {}, b'{"code":404,"message":"snapshot warm:v9 not found"}')
    assert api.parse_created(201, {}, DETAIL).sandbox_id == "s1"


def test_pause_and_resume_turn_409_into_false() -> None:
    assert api.pause_sandbox("s1") == api.Request("POST", "/sandboxes/s1/pause")
    assert api.parse_pause(204, {}, b"") is True
    assert api.parse_pause(409, {}, b'{"code":409,"message":"sandbox s1 is paused"}') is False
    with pytest.raises(exceptions.SandboxNotFoundError):
        api.parse_pause(404, {}, b'{"code":404,"message":"sandbox s1 not found"}')
    assert api.resume_sandbox("s1").json == {}
    assert api.resume_sandbox("s1", timeout=90).json == {"timeout": 90}
    assert api.parse_resume(201, {}, DETAIL) == api.SandboxHandle("s1", "base", "0.6.4", "tok", "sandlot.local")
    assert api.parse_resume(409, {}, b'{"code":409,"message":"sandbox s1 is running"}') is None
    with pytest.raises(exceptions.SandboxNotFoundError):
        api.parse_resume(404, {}, b'{"code":404,"message":"sandbox s1 not found"}')


def test_fork_request_and_partial_answers() -> None:
    assert api.fork_sandbox("s1").json == {"count": 1}
    assert api.fork_sandbox("s1", count=4, timeout=60).json == {"count": 4, "timeout": 60}
    for bad in (0, -1, True, 1.5):
        with pytest.raises(exceptions.InvalidArgumentError):
            api.fork_sandbox("s1", count=bad)  # type: ignore[arg-type]
    child = json.dumps({"sandbox": json.loads(DETAIL) | {"sandboxID": "c1"}})
    answer = f'[{child}, {{"error": {{"code": 429, "message": "too many"}}}}]'.encode()
    first, second = api.parse_fork(201, {}, answer)
    assert isinstance(first, api.SandboxHandle) and first.sandbox_id == "c1" and first.access_token == "tok"
    assert isinstance(second, exceptions.RateLimitedError)
    with pytest.raises(exceptions.AlreadyExistsError, match="paused"):
        api.parse_fork(409, {}, b'{"code":409,"message":"sandbox s1 is paused: resume it first"}')
    with pytest.raises(exceptions.ProtocolError):
        api.parse_fork(201, {}, b'[{"neither": 1}]')


def test_restart_request() -> None:
    assert api.restart_sandbox("s1") == api.Request("POST", "/sandboxes/s1/restart", json={})
    assert api.restart_sandbox("s1", timeout=30).json == {"timeout": 30}


SNAPSHOT = {
    "snapshotID": "warm:v2",
    "names": ["warm:v2"],
    "sandboxID": "s1",
    "memory": False,
    "createdAt": "2025-01-02T03:04:05Z",
    "sizeBytes": 4096,
}


def test_snapshot_requests_and_answers() -> None:
    assert api.create_snapshot("s1").json == {"memory": True}
    assert api.create_snapshot("s1", name="warm", memory=False).json == {"memory": False, "name": "warm"}
    for bad in ("", "a/b"):
        with pytest.raises(exceptions.InvalidArgumentError):
            api.create_snapshot("s1", name=bad)
    snap = api.parse_snapshot(201, {}, json.dumps(SNAPSHOT).encode())
    assert snap == models.SnapshotInfo(
        "warm:v2", ["warm:v2"], "s1", False, datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), 4096
    )
    minimal = api.parse_snapshot(201, {}, b'{"snapshotID":"a:v1","names":["team/a:v1"]}')  # E2B's required keys
    assert (minimal.snapshot_id, minimal.names, minimal.memory, minimal.created_at) == (
        "a:v1", ["team/a:v1"], True, None
    )
    with pytest.raises(exceptions.AlreadyExistsError):
        api.parse_snapshot(409, {}, b'{"code":409,"message":"sandbox s1 is paused"}')
    with pytest.raises(exceptions.ProtocolError):
        api.parse_snapshot(201, {}, b'{"names":[]}')


def test_snapshot_list_pages_and_delete() -> None:
    assert api.list_snapshots().params is None
    assert api.list_snapshots(sandbox_id="s1", name="warm", limit=2, next_token="t").params == {
        "sandboxID": "s1",
        "name": "warm",
        "limit": "2",
        "nextToken": "t",
    }
    page, token = api.parse_snapshot_list(200, httpx.Headers({"x-next-token": "n2"}), json.dumps([SNAPSHOT]).encode())
    assert [s.snapshot_id for s in page] == ["warm:v2"] and token == "n2"
    # name:tag travels as one percent-encoded segment, and the server decodes it back
    request = api.delete_snapshot("warm:v2")
    url = httpx.URL("http://h" + request.path)
    assert (request.method, url.raw_path) == ("DELETE", b"/templates/warm%3Av2")
    assert urllib.parse.unquote(url.raw_path.decode()) == "/templates/warm:v2"
    assert api.parse_delete_snapshot(204, {}, b"") is True
    assert api.parse_delete_snapshot(404, {}, b"not json at all") is False
    with pytest.raises(exceptions.InvalidArgumentError):
        api.delete_snapshot("")


def test_metrics() -> None:
    body = json.dumps(
        [
            {
                "timestamp": "2025-01-01T00:00:00Z",
                "timestampUnix": 1735689600,
                "cpuCount": 1,
                "cpuUsedPct": 1.5,
                "memUsed": 10,
                "memTotal": 100,
                "memCache": 1,
                "diskUsed": 5,
                "diskTotal": 50,
            }
        ]
    ).encode()
    [sample] = api.parse_metrics(200, {}, body)
    assert sample.cpu_used_pct == 1.5
    assert sample.timestamp.year == 2025
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    assert api.get_metrics("s1", start=start).params == {"start": "1735689600"}


def test_config_explicit_beats_environment() -> None:
    env = {"SANDLOT_API_URL": "http://env:1/", "SANDLOT_API_KEY": "e2b_env"}
    assert ConnectionConfig.from_env(env).api_url == "http://env:1"
    assert ConnectionConfig.from_env(env, api_key="e2b_arg").api_key == "e2b_arg"
    assert ConnectionConfig.from_env({}).api_url == "http://127.0.0.1:3000"
    assert ConnectionConfig.from_env({}).retry_policy().retries == 3
    assert ConnectionConfig.from_env({}, retries=0).retry_policy().retries == 0
    with pytest.raises(exceptions.AuthenticationError, match="SANDLOT_API_KEY"):
        ConnectionConfig.from_env({}).api_headers()
    with pytest.raises(exceptions.InvalidArgumentError):
        ConnectionConfig.from_env({"SANDLOT_API_URL": "ftp://x"})
    headers = ConnectionConfig.sandbox_headers("s1", "tok")
    assert headers["E2b-Sandbox-Id"] == "s1"
    assert headers["X-Access-Token"] == "tok"
    assert "X-Access-Token" not in ConnectionConfig.sandbox_headers("s1", None)


# ------------------------------------------------------------------------------ process


def test_start_request_matches_the_e2b_sdk() -> None:
    assert process.start_request("echo hi") == {
        "process": {"cmd": "/bin/bash", "args": ["-l", "-c", "echo hi"]},
        "stdin": False,
    }
    message = process.start_request("x", envs={"A": "1"}, cwd="/tmp", stdin=True, tag="t")
    assert message["process"]["envs"] == {"A": "1"}
    assert message["process"]["cwd"] == "/tmp"
    assert message["stdin"] is True
    assert message["tag"] == "t"


def test_pty_request() -> None:
    message = process.pty_request(models.PtySize(100, 30), envs={"TERM": "dumb"})
    assert message["process"]["args"] == ["-i", "-l"]
    assert message["process"]["envs"]["TERM"] == "dumb"
    assert message["pty"] == {"size": {"cols": 100, "rows": 30}}
    assert "stdin" not in message
    with pytest.raises(exceptions.InvalidArgumentError):
        process.pty_request(models.PtySize(0, 30))


def test_small_requests() -> None:
    assert process.send_input_request(7, "data") == {"process": {"pid": 7}, "input": {"stdin": "ZGF0YQ=="}}
    assert process.send_input_request(7, b"\x04", pty=True) == {"process": {"pid": 7}, "input": {"pty": "BA=="}}
    assert process.signal_request("web") == {"process": {"tag": "web"}, "signal": "SIGNAL_SIGKILL"}
    assert process.update_request(7, models.PtySize(1, 2)) == {
        "process": {"pid": 7},
        "pty": {"size": {"cols": 1, "rows": 2}},
    }
    for bad in (0, -1, True, 1.5):
        with pytest.raises(exceptions.InvalidArgumentError):
            process.selector(bad)  # type: ignore[arg-type]


def test_events() -> None:
    assert process.parse_event({"event": {"start": {"pid": 5}}}) == process.StartEvent(5)
    assert process.parse_event({"event": {"data": {"stderr": "b29wcw=="}}}) == process.DataEvent(stderr=b"oops")
    end = process.parse_event({"event": {"end": {"exitCode": -1, "status": "signal: killed"}}})
    assert end == process.EndEvent(-1, False, "signal: killed", None)
    assert process.parse_event({"event": {"keepalive": {}}}) == process.KeepaliveEvent()
    assert process.parse_event({"event": {"future": {}}}) is None
    with pytest.raises(exceptions.ProtocolError):
        process.parse_event({"nothing": 1})


def test_collector_decodes_utf8_across_chunks_and_replaces_invalid_bytes() -> None:
    collector = process.OutputCollector()
    snowman = "☃".encode()
    assert collector.add(process.DataEvent(stdout=snowman[:1])) == ""
    assert collector.add(process.DataEvent(stdout=snowman[1:] + b"\xff!")) == "☃\ufffd!"
    collector.add(process.DataEvent(stderr=b"\xe2\x98"))  # cut short at the end
    collector.finish()
    assert collector.stdout == "☃\ufffd!"
    assert collector.stderr == "\ufffd"
    with pytest.raises(exceptions.ProtocolError, match="end event"):
        collector.result()
    collector.end = process.EndEvent(3, True, "exit status 3", None)
    assert collector.result() == models.CommandResult("☃\ufffd!", "\ufffd", 3)


def test_process_list() -> None:
    [info] = process.parse_process_list(
        {"processes": [{"pid": 9, "config": {"cmd": "/bin/bash", "args": ["-l"], "cwd": "/"}, "tag": "x"}]}
    )
    assert info == models.ProcessInfo(9, "/bin/bash", ["-l"], {}, "/", "x")


# --------------------------------------------------------------------------- filesystem


def test_entry_parsing() -> None:
    entry = filesystem.parse_entry(
        {
            "name": "a",
            "type": "FILE_TYPE_FILE",
            "path": "/a",
            "size": "3",
            "mode": 420,
            "permissions": "-rw-r--r--",
            "owner": "user",
            "group": "user",
            "modifiedTime": "2025-01-01T00:00:00Z",
            "metadata": {"k": "v"},
        }
    )
    assert (entry.type, entry.size, entry.mode, entry.metadata) == (models.FileType.FILE, 3, 420, {"k": "v"})
    link = filesystem.parse_entry({"name": "l", "type": "FILE_TYPE_SYMLINK", "symlinkTarget": "/a"})
    assert (link.type, link.symlink_target) == (models.FileType.SYMLINK, "/a")
    entries = filesystem.parse_entries({"entries": [{"name": "d", "type": "FILE_TYPE_DIRECTORY"}, {"name": "?"}]})
    assert [(e.name, e.type) for e in entries] == [("d", models.FileType.DIR)]


def test_watch_messages() -> None:
    assert filesystem.parse_watch_message({"start": {}}) == "start"
    assert filesystem.parse_watch_message({"keepalive": {}}) is None
    event = filesystem.parse_watch_message(
        {"filesystem": {"name": "x", "type": "EVENT_TYPE_REMOVE", "entry": {"name": "x", "type": 1}}}
    )
    assert isinstance(event, models.WatchEvent)
    assert event.type is models.WatchEventType.REMOVE
    assert event.entry is not None and event.entry.type is models.FileType.FILE
    assert filesystem.parse_watch_message({"filesystem": {"name": "x"}}) is None
    assert filesystem.watch_request("/d", recursive=True, include_entry=True) == {
        "path": "/d",
        "recursive": True,
        "includeEntry": True,
    }


def test_files_requests_and_answers() -> None:
    assert filesystem.files_params("/a b", user="root") == {"path": "/a b", "username": "root"}
    with pytest.raises(exceptions.InvalidArgumentError):
        filesystem.files_params("")
    with pytest.raises(exceptions.InvalidArgumentError):
        filesystem.check_path("/a\x00b")
    assert filesystem.metadata_headers({"owner": "me"}) == {"X-Metadata-owner": "me"}
    with pytest.raises(exceptions.InvalidArgumentError):
        filesystem.metadata_headers({"bad key": "v"})
    with pytest.raises(exceptions.InvalidArgumentError):
        filesystem.metadata_headers({"k": "caf\u00e9"})
    [written] = filesystem.parse_write_answer(200, {}, b'[{"name":"a","type":"file","path":"/a","metadata":{"k":"v"}}]')
    assert written == models.WriteInfo("a", "/a", models.FileType.FILE, {"k": "v"})
    with pytest.raises(exceptions.ProtocolError):
        filesystem.parse_write_answer(200, {}, b"[]")
    with pytest.raises(exceptions.PathNotFoundError):
        filesystem.check_files_status(404, {}, b'{"code":404,"message":"no such file"}')
    with pytest.raises(exceptions.InvalidArgumentError):
        filesystem.check_files_status(400, {}, b'{"code":400,"message":"is a directory"}')
    with pytest.raises(exceptions.NotEnoughSpaceError):
        filesystem.check_files_status(507, {}, b'{"code":507,"message":"full"}')
    assert filesystem.list_request("/d") == {"path": "/d", "depth": 1}
    with pytest.raises(exceptions.InvalidArgumentError):
        filesystem.list_request("/d", 0)


def test_a_misspelt_create_option_is_refused_as_python_refuses_it() -> None:
    with pytest.raises(TypeError, match="create\\(\\) got an unexpected keyword argument 'envvars'"):
        api.create_sandbox(envvars={"A": "1"})  # type: ignore[call-arg]
