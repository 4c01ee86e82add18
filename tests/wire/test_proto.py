"""The messages are held to the ``.proto`` files (`sandlot/agent/proto`), which are no longer
documentation only.

Messages stay dicts of proto3 JSON; a small parser (`protofile`) reads the .proto files and
these tests check against them: the routes the sandbox plane serves (path and streaming kind),
every field the agent reads (by name and by the type its reader expects), and every message that
crosses a real exchange between the SDK's request builders, the agent's services on a real runc
sandbox, and the SDK's parsers. Generated message classes would have meant a generator, a
runtime dependency or a hundred lines of TypedDicts that nothing checks at run time; this holds
the same names and types with one reader in the tests.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sandlot.agent import filesystem, process, rpc
from sandlot.api import connect
from sandlot.api import sandbox as sandbox_api
from sandlot.runtime import models, target
from sandlot.runtime.drivers.runc import RuncDriver
from sandlot.sdk._core import filesystem as sdk_filesystem
from sandlot.sdk._core import models as sdk_models
from sandlot.sdk._core import process as sdk_process
from tests.wire import protofile

PROTO_DIR = Path(filesystem.__file__).parent / "proto"
SCHEMA = protofile.load(sorted(PROTO_DIR.glob("*.proto")))


def test_the_sandbox_plane_serves_every_rpc_with_its_streaming_kind() -> None:
    async def resolver(sandbox_id: str, token: str | None) -> target.SandboxTarget:
        raise target.SandboxGone

    plane = sandbox_api.create_sandbox_app(resolver)
    served = {
        route.path: route.endpoint.kind for route in plane.envd.routes if isinstance(route.endpoint, connect.Endpoint)
    }
    kinds = {
        (False, False): connect.Kind.UNARY,
        (False, True): connect.Kind.SERVER_STREAM,
        (True, False): connect.Kind.CLIENT_STREAM,
    }
    assert served == {path: kinds[rpc_.client_stream, rpc_.server_stream] for path, rpc_ in SCHEMA.rpcs.items()}


def _fits(getter: str, field: protofile.Field) -> bool:
    single = not field.repeated and field.map_value is None
    return {
        "get_message": single and field.type in SCHEMA.messages,
        "get_str": single and field.type == "string",
        "get_bool": single and field.type == "bool",
        "get_int": single and field.type in {"int32", "uint32", "sint32", "int64", "uint64"},
        "get_bytes": single and field.type == "bytes",
        "get_str_map": field.map_value == "string",
        "get_str_list": field.repeated and field.type == "string",
    }[getter]


@pytest.mark.parametrize("service", [process, filesystem], ids=["process", "filesystem"])
def test_every_field_the_agent_reads_is_in_its_proto_with_that_type(service: Any) -> None:
    package = service.__name__.rsplit(".", 1)[1]
    reads = [
        (node.func.attr, node.args[1].value)
        for node in ast.walk(ast.parse(inspect.getsource(service)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "rpc"
        and node.func.attr.startswith("get_")
    ]
    assert len(reads) > 5
    for getter, name in reads:
        fields = [f for m, fs in SCHEMA.messages.items() if m.startswith(f"{package}.") for f in fs.values()]
        assert any(f.json_name == name and _fits(getter, f) for f in fields), f"{package}: rpc.{getter}(..., {name!r})"


class Exchange:
    """Calls the agent's services as the Connect transport does, holding every request and every
    reply to the rpc's message types."""

    def __init__(self, call: rpc.Call) -> None:
        self.call = call

    async def unary(
        self, path: str, handler: Callable[..., Awaitable[dict[str, Any]]], request: dict[str, Any]
    ) -> dict[str, Any]:
        types = SCHEMA.rpcs[path]
        SCHEMA.check(types.request, request)
        reply = await handler(self.call, request)
        SCHEMA.check(types.response, reply)
        return reply

    async def stream(
        self, path: str, handler: Callable[..., AsyncIterator[dict[str, Any]]], request: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        types = SCHEMA.rpcs[path]
        SCHEMA.check(types.request, request)
        async for reply in handler(self.call, request):
            SCHEMA.check(types.response, reply)
            yield reply


_ids = itertools.count()


async def test_messages_of_a_real_exchange_match_the_proto(driver: RuncDriver) -> None:
    sandbox_id = f"wire-{os.getpid()}-{next(_ids)}"
    await driver.create(spec=models.SandboxSpec(sandbox_id=sandbox_id, network=models.NetworkPolicy(internet=False)))
    try:
        sandbox = target.SandboxTarget(
            sandbox_id, driver, address="", filesystem=await driver.filesystem(sandbox_id=sandbox_id)
        )
        exchange = Exchange(rpc.Call(target=sandbox, user="user"))
        await _filesystem_calls(exchange, filesystem.FilesystemService())
        await _process_calls(exchange, process.ProcessService())
    finally:
        await driver.destroy(sandbox_id=sandbox_id)


async def _filesystem_calls(exchange: Exchange, fs: filesystem.FilesystemService) -> None:
    def path(method: str) -> str:
        return sdk_filesystem.path(method)

    made = await exchange.unary(path("MakeDir"), fs.make_dir, {"path": "/home/user/d"})
    assert sdk_filesystem.parse_entry(made["entry"]).type == sdk_models.FileType.DIR
    watcher = await exchange.unary(
        path("CreateWatcher"), fs.create_watcher, sdk_filesystem.watch_request("/home/user/d")
    )
    moved = await exchange.unary(path("Move"), fs.move, sdk_filesystem.move_request("/home/user/d", "/home/user/e"))
    assert sdk_filesystem.parse_entry(moved["entry"]).path == "/home/user/e"
    listed = await exchange.unary(path("ListDir"), fs.list_dir, sdk_filesystem.list_request("/home/user", 2))
    assert "/home/user/e" in {entry.path for entry in sdk_filesystem.parse_entries(listed)}
    stat = await exchange.unary(path("Stat"), fs.stat, {"path": "/home/user/e"})
    assert sdk_filesystem.parse_entry(stat["entry"]).name == "e"
    events = await exchange.unary(path("GetWatcherEvents"), fs.get_watcher_events, {"watcherId": watcher["watcherId"]})
    assert events["events"], "moving the watched directory away is an event"
    for event in events["events"]:
        sdk_filesystem.parse_watch_message({"filesystem": event})
    await exchange.unary(path("RemoveWatcher"), fs.remove_watcher, {"watcherId": watcher["watcherId"]})
    await exchange.unary(path("Remove"), fs.remove, {"path": "/home/user/e"})
    watch = exchange.stream(
        path("WatchDir"), fs.watch_dir, sdk_filesystem.watch_request("/home/user", include_entry=True)
    )
    assert sdk_filesystem.parse_watch_message(await anext(watch)) == "start"
    await watch.aclose()


async def _process_calls(exchange: Exchange, processes: process.ProcessService) -> None:
    def path(method: str) -> str:
        return sdk_process.path(method)

    collected = sdk_process.OutputCollector()
    start = sdk_process.start_request("echo out; echo err >&2; exit 3")
    async for reply in exchange.stream(path("Start"), processes.start, start):
        event = sdk_process.parse_event(reply)
        if isinstance(event, sdk_process.DataEvent):
            collected.add(event)
        elif isinstance(event, sdk_process.EndEvent):
            collected.end = event
    collected.finish()
    result = collected.result()
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)

    cat = exchange.stream(path("Start"), processes.start, sdk_process.start_request("cat", stdin=True, tag="cat"))
    started = sdk_process.parse_event(await anext(cat))
    assert isinstance(started, sdk_process.StartEvent)
    listed = await exchange.unary(path("List"), processes.list_processes, {})
    assert "cat" in {info.tag for info in sdk_process.parse_process_list(listed)}
    await exchange.unary(path("SendInput"), processes.send_input, sdk_process.send_input_request("cat", "hi\n"))
    await exchange.unary(path("CloseStdin"), processes.close_stdin, sdk_process.close_stdin_request(started.pid))
    events = [sdk_process.parse_event(reply) async for reply in cat]
    assert isinstance(events[-1], sdk_process.EndEvent) and events[-1].exit_code == 0

    shell = exchange.stream(
        path("Start"), processes.start, sdk_process.pty_request(sdk_models.PtySize(80, 24), cmd="sleep 30")
    )
    pid = sdk_process.parse_event(await anext(shell)).pid  # type: ignore[union-attr]
    await exchange.unary(path("Update"), processes.update, sdk_process.update_request(pid, sdk_models.PtySize(100, 30)))
    attached = exchange.stream(path("Connect"), processes.connect, sdk_process.connect_request(pid))
    assert isinstance(sdk_process.parse_event(await anext(attached)), sdk_process.StartEvent)
    await exchange.unary(path("SendSignal"), processes.send_signal, sdk_process.signal_request(pid))
    for stream in (shell, attached):
        events = [sdk_process.parse_event(reply) async for reply in stream]
        assert isinstance(events[-1], sdk_process.EndEvent) and events[-1].exit_code != 0
