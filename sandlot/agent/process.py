"""The ``process.Process`` service (envd-compatible) over the runtime's process handles.

Messages are proto3 JSON dicts of ``sandlot/agent/proto/process.proto``. The runtime does the
real work: `driver.start` spawns through the sandbox's init, `driver.attach` gives another
handle on a running process, and closing a handle only detaches. So a client that goes away
leaves its process running, and `Connect` picks it up again: E2B's semantics.

Choices where E2B's wire contract is silent:

* A `Start` whose deadline (``connect-timeout-ms``) passes kills the process (SIGKILL) and
  ends the stream with ``deadline_exceeded``, as envd does: ``commands.run(cmd, timeout=t)``
  bounds the command. A client that merely disconnects never kills anything; `Connect`'s
  deadline ends only that stream.
* ``stdin`` unset (PTYs, old SDKs) keeps stdin open; ``"stdin": false`` makes it read as empty.
* A process killed by a signal ends with ``exitCode: -1, exited: false`` and a Go-style status
  (``"signal: killed"``), as envd reports it.
* Input to a process is written through the handle of a live `Start` stream when there is one
  (no extra connection), else through a short-lived `attach`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal as signals
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sandlot._wire import errors as wire
from sandlot.agent import rpc
from sandlot.runtime import base, errors, models

__all__ = ["KEEPALIVE", "ProcessService"]

KEEPALIVE: dict[str, Any] = {"event": {"keepalive": {}}}
_SIGNALS = {"SIGNAL_SIGKILL": signals.SIGKILL, "SIGNAL_SIGTERM": signals.SIGTERM}
_MAX_CONFIGS = 4096


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """Translate runtime errors into the agent's, keeping the cause."""
    try:
        yield
    except errors.ProcessNotFound as exc:
        raise wire.NotFound(f"process with pid {exc.pid} not found") from exc
    except errors.ProcessStartError as exc:
        raise wire.InvalidArgument(f"failed to start the process: {exc}") from exc
    except (errors.SandboxNotFound, errors.SandboxStateError) as exc:
        raise wire.Unavailable(f"The sandbox was not found ({exc})") from exc
    except errors.StreamClosed as exc:
        raise wire.Unavailable(str(exc)) from exc
    except errors.RuntimeDriverError as exc:
        raise wire.Unavailable(f"the sandbox is not answering: {exc}") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def end_event(status: models.ExitStatus) -> dict[str, Any]:
    if status.signal:
        try:
            name = (signals.strsignal(status.signal) or f"signal {status.signal}").lower()
        except ValueError:
            name = f"signal {status.signal}"
        return {"exitCode": -1, "exited": False, "status": f"signal: {name}"}
    code = status.exit_code if status.exit_code is not None else -1
    return {"exitCode": code, "exited": True, "status": f"exit status {code}"}


def _pty_size(message: dict[str, Any] | None) -> models.PtySize | None:
    if message is None:
        return None
    size = rpc.get_message(message, "size") or {}
    try:
        return models.PtySize(
            rows=rpc.get_int(size, "rows", high=65535) or 24,
            cols=rpc.get_int(size, "cols", high=65535) or 80,
        )
    except ValueError as exc:
        raise wire.InvalidArgument(str(exc)) from None


class ProcessService:
    """One per app; holds the handles of live `Start` streams, keyed by sandbox and pid."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, int], base.Process] = {}
        self._envs: dict[tuple[str, int], dict[str, str]] = {}

    # -- streams -------------------------------------------------------------------------

    async def start(self, call: rpc.Call, message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        config = rpc.get_message(message, "process") or {}
        cmd = rpc.get_str(config, "cmd")
        if not cmd:
            raise wire.InvalidArgument("process.cmd must name a program")
        envs = rpc.get_str_map(config, "envs")
        if any(not key or "=" in key for key in envs):
            raise wire.InvalidArgument("process.envs: names must be non-empty and contain no '='")
        pty = _pty_size(rpc.get_message(message, "pty"))
        stdin = rpc.get_bool(message, "stdin")
        try:
            spec = models.ProcessSpec(
                argv=[cmd, *rpc.get_str_list(config, "args")],
                env={**call.target.env, **envs},
                cwd=rpc.get_str(config, "cwd") or None,
                user=call.user,
                stdin=True if stdin is None else stdin,
                pty=pty,
                tag=rpc.get_str(message, "tag") or "",
            )
        except ValueError as exc:
            raise wire.InvalidArgument(str(exc)) from None
        with driver_errors():
            proc = await call.target.driver.start(sandbox_id=call.target.sandbox_id, process=spec)
        key = (call.target.sandbox_id, proc.pid)
        if len(self._envs) >= _MAX_CONFIGS:
            self._envs.pop(next(iter(self._envs)))
        self._envs[key] = envs
        async for event in self._follow(call, proc, pty=pty is not None, kill_at_deadline=True):
            yield event

    async def connect(self, call: rpc.Call, message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        pid, info = await self._select(call, rpc.get_message(message, "process"))
        with driver_errors():
            proc = await call.target.driver.attach(sandbox_id=call.target.sandbox_id, pid=pid)
        async for event in self._follow(call, proc, pty=info.pty if info else False, kill_at_deadline=False):
            yield event

    async def _follow(
        self, call: rpc.Call, proc: base.Process, *, pty: bool, kill_at_deadline: bool
    ) -> AsyncIterator[dict[str, Any]]:
        key = (call.target.sandbox_id, proc.pid)
        self._live.setdefault(key, proc)
        names = {
            base.OutputStream.STDOUT: "pty" if pty else "stdout",
            base.OutputStream.STDERR: "stderr",
        }
        try:
            yield {"event": {"start": {"pid": proc.pid}}}
            with driver_errors():
                async with contextlib.aclosing(proc.output()) as chunks:  # type: ignore[type-var]
                    async for stream, chunk in chunks:
                        call.target.touch()
                        yield {"event": {"data": {names[stream]: _b64(chunk)}}}
                status = await proc.wait()
            self._envs.pop(key, None)
            yield {"event": {"end": end_event(status)}}
        except asyncio.CancelledError:
            loop = asyncio.get_running_loop()
            if kill_at_deadline and call.deadline is not None and loop.time() >= call.deadline - 0.01:
                with contextlib.suppress(errors.RuntimeDriverError):
                    await proc.signal(signals.SIGKILL)
            raise
        finally:
            if self._live.get(key) is proc:
                del self._live[key]
            with contextlib.suppress(errors.RuntimeDriverError):
                await proc.aclose()

    # -- unary ---------------------------------------------------------------------------

    async def list_processes(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        with driver_errors():
            infos = await call.target.driver.processes(sandbox_id=call.target.sandbox_id)
        sid = call.target.sandbox_id
        alive = {(sid, info.pid) for info in infos}
        for key in [k for k in self._envs if k[0] == sid and k not in alive]:
            del self._envs[key]
        processes = []
        for info in infos:
            entry: dict[str, Any] = {
                "config": {
                    "cmd": info.argv[0] if info.argv else "",
                    "args": list(info.argv[1:]),
                    "envs": self._envs.get((sid, info.pid), {}),
                    "cwd": info.cwd,
                },
                "pid": info.pid,
            }
            if info.tag:
                entry["tag"] = info.tag
            processes.append(entry)
        return {"processes": processes}

    async def send_input(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        pid, _ = await self._select(call, rpc.get_message(message, "process"), need_info=False)
        data = _input(rpc.get_message(message, "input"))
        await self._on_process(call, pid, lambda proc: proc.write_stdin(data))
        return {}

    async def stream_input(self, call: rpc.Call, messages: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        first = await anext(messages, None)
        start = rpc.get_message(first or {}, "start")
        if start is None:
            raise wire.InvalidArgument("the first StreamInput message must be a start event")
        pid, _ = await self._select(call, rpc.get_message(start, "process"), need_info=False)
        proc = self._live.get((call.target.sandbox_id, pid))
        owned = None
        if proc is None:
            with driver_errors():
                proc = owned = await call.target.driver.attach(sandbox_id=call.target.sandbox_id, pid=pid)
        try:
            async for item in messages:
                data = rpc.get_message(item, "data")
                if data is not None:
                    chunk = _input(rpc.get_message(data, "input"))
                    with driver_errors():
                        await proc.write_stdin(chunk)
        finally:
            if owned is not None:
                with contextlib.suppress(errors.RuntimeDriverError):
                    await owned.aclose()
        return {}

    async def close_stdin(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        pid, _ = await self._select(call, rpc.get_message(message, "process"), need_info=False)
        await self._on_process(call, pid, lambda proc: proc.close_stdin())
        return {}

    async def send_signal(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        pid, _ = await self._select(call, rpc.get_message(message, "process"), need_info=False)
        raw = message.get("signal")
        if isinstance(raw, str) and raw in _SIGNALS:
            signum = int(_SIGNALS[raw])
        elif isinstance(raw, (int, str)) and not isinstance(raw, bool) and str(raw).isdigit() and int(raw) in (9, 15):
            signum = int(raw)
        else:
            raise wire.InvalidArgument(f"signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM, got {raw!r}")
        await self._on_process(call, pid, lambda proc: proc.signal(signum))
        return {}

    async def update(self, call: rpc.Call, message: dict[str, Any]) -> dict[str, Any]:
        pid, _ = await self._select(call, rpc.get_message(message, "process"), need_info=False)
        size = _pty_size(rpc.get_message(message, "pty"))
        if size is not None:
            await self._on_process(call, pid, lambda proc: proc.resize(size))
        return {}

    # -- helpers -------------------------------------------------------------------------

    async def _select(
        self, call: rpc.Call, selector: dict[str, Any] | None, *, need_info: bool = True
    ) -> tuple[int, models.ProcessInfo | None]:
        """The pid a ProcessSelector names (and what the runtime says of it, when needed)."""
        if selector is None:
            raise wire.InvalidArgument("process must name a pid or a tag")
        pid = rpc.get_int(selector, "pid")
        tag = rpc.get_str(selector, "tag")
        if pid is None and not tag:
            raise wire.InvalidArgument("process must name a pid or a tag")
        if pid is not None and not need_info:
            return pid, None
        with driver_errors():
            infos = await call.target.driver.processes(sandbox_id=call.target.sandbox_id)
        for info in infos:
            if (pid is not None and info.pid == pid) or (pid is None and info.tag == tag):
                return info.pid, info
        raise wire.NotFound(
            f"process with pid {pid} not found" if pid is not None else f"process with tag {tag!r} not found"
        )

    async def _on_process(self, call: rpc.Call, pid: int, action: Any) -> None:
        """Run ``action(handle)`` on a live stream's handle, else on a fresh attach."""
        proc = self._live.get((call.target.sandbox_id, pid))
        if proc is not None:
            try:
                with driver_errors():
                    await action(proc)
                return
            except wire.Unavailable:
                pass  # that stream's handle just closed: attach instead
        with driver_errors():
            proc = await call.target.driver.attach(sandbox_id=call.target.sandbox_id, pid=pid)
            try:
                await action(proc)
            finally:
                with contextlib.suppress(errors.RuntimeDriverError):
                    await proc.aclose()


def _input(message: dict[str, Any] | None) -> bytes:
    if message is None:
        raise wire.InvalidArgument("input must carry stdin or pty bytes")
    data = rpc.get_bytes(message, "stdin")
    if data is None:
        data = rpc.get_bytes(message, "pty")
    if data is None:
        raise wire.InvalidArgument("input must carry stdin or pty bytes")
    return data
