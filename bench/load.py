"""Mixed load: clients looping through a sandbox's whole life with the unmodified e2b SDK.

Each client loops, as issue 18 describes: create -> three commands -> write and read a file ->
(one loop in ``pause_every``) pause, then ``AsyncSandbox.connect`` (a resume) and read the
file again -> (one loop in ``fork_every``, when set) fork one copy, run a command in it and
kill it -> kill. Every answer is checked (a command's output, a file's content), so a wrong
answer is an error too, not only an exception. Every call has a deadline (``call_timeout``):
a call that hangs is reported as an error instead of stalling the run.

`run` is the one entry point: N clients for T seconds against a server, returning a
`Report` (loops done, every error with its message, per-operation p50/p99/max latency).
`served` starts a real `sandlot serve` for it (`serving` of tests/_support/server.py), which
takes the leak census of its instance after stopping it. bench/chaos.py and bench/soak.py and
tests/reliability/ build on both.

    sudo .venv/bin/python -m bench.load [--clients 16] [--seconds 120] [--url URL --key KEY]

Without ``--url`` it starts its own server (in a temporary data dir) and checks for leaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from e2b import AsyncSandbox
from e2b.exceptions import NotFoundException

from tests import slot
from tests._support.server import Server, scratch_dir, serving

T = TypeVar("T")

COMMANDS = [
    ("echo $((6 * 7))", "42\n"),
    ("python3 -c 'import sys; print(sys.argv[1][::-1])' olleh", "hello\n"),
    ("cat /proc/1/comm", "init\n"),
]
"""The three commands of a loop and what each must print."""

FILE = "/home/user/load.txt"


@dataclasses.dataclass
class Report:
    """What a load run did: loops completed, errors, and each operation's latencies (s)."""

    clients: int
    seconds: float
    loops: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    latencies: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, op: str, seconds: float) -> None:
        self.latencies.setdefault(op, []).append(seconds)

    def figures(self) -> dict[str, dict[str, float]]:
        """Per operation: count, p50, p99 and max in milliseconds."""
        out = {}
        for op, samples in self.latencies.items():
            ordered = sorted(samples)
            out[op] = {
                "count": len(ordered),
                "p50": statistics.median(ordered) * 1000,
                "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
                "max": ordered[-1] * 1000,
            }
        return out

    def slowest(self) -> float:
        """The longest any single operation took, in seconds."""
        return max((max(s) for s in self.latencies.values()), default=0.0)

    def summary(self) -> str:
        lines = [
            f"{self.clients} clients, {self.seconds:.0f} s: {self.loops} loops, {len(self.errors)} errors",
            f"  {'operation':<10}{'count':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
        ]
        for op, f in self.figures().items():
            lines.append(f"  {op:<10}{f['count']:>7.0f}{f['p50']:>10.1f}{f['p99']:>10.1f}{f['max']:>10.1f}")
        counted: dict[str, int] = {}
        for error in self.errors:
            counted[error] = counted.get(error, 0) + 1
        lines += [f"  error x{n}: {error}" for error, n in sorted(counted.items(), key=lambda kv: -kv[1])[:20]]
        return "\n".join(lines)


class Gate:
    """Lets the clients' calls through while open and counts those in flight.

    bench/chaos.py closes it before it kills the server, waits until no call is in flight
    after the restart, looks at every sandbox undisturbed, then opens it again.
    """

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.in_flight = 0

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def quiet(self) -> None:
        """Wait until no call is in flight."""
        await self._idle.wait()

    @contextlib.asynccontextmanager
    async def passage(self) -> Any:
        await self._open.wait()
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()


class LoadError(Exception):
    """One operation of a loop failed or answered wrong."""


@dataclasses.dataclass
class Mix:
    """What a loop does besides create, commands, files and kill."""

    pause_every: int = 5
    """One loop in this many pauses the sandbox and connects to it again (0: never)."""
    fork_every: int = 0
    """One loop in this many forks the sandbox (0: never)."""


@dataclasses.dataclass
class Load:
    """N clients' loops against one server; `held` is every sandbox a client holds now, with
    the content of its file once a write of it was answered (None before)."""

    url: str
    key: str
    mix: Mix
    call_timeout: float
    report: Report
    stop: float
    """`time.monotonic` after which no client starts another loop (a controller may move it)."""
    gate: Gate = dataclasses.field(default_factory=Gate)
    held: dict[str, str | None] = dataclasses.field(default_factory=dict)

    @property
    def opts(self) -> dict[str, Any]:
        """The e2b SDK pointed at the server, with our deadline on every request."""
        return {
            "api_url": self.url,
            "sandbox_url": self.url,
            "api_key": self.key,
            "request_timeout": self.call_timeout,
        }

    async def call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        """One timed call through the gate (see `bounded`)."""
        async with self.gate.passage():
            started = time.perf_counter()
            result = await bounded(op, make, self.call_timeout)
            self.report.add(op, time.perf_counter() - started)
            return result

    async def drive(self) -> None:
        """Run the clients until `stop` (each finishes the loop it is in)."""
        begin = time.monotonic()
        await asyncio.gather(*(self.client(n) for n in range(self.report.clients)))
        self.report.seconds = self.stop - begin

    async def client(self, n: int) -> None:
        for loop in itertools.count(n):
            if time.monotonic() >= self.stop:
                return
            sbx: AsyncSandbox | None = None
            try:
                sbx = await self.call(
                    "create", lambda: AsyncSandbox.create(timeout=300, metadata={"load": str(n)}, **self.opts)
                )
                self.held[sbx.sandbox_id] = None
                sbx = await self.loop(sbx, loop)
                self.report.loops += 1
            except LoadError as exc:
                self.report.errors.append(str(exc))
            if sbx is not None:
                await self.end(sbx)

    async def loop(self, sbx: AsyncSandbox, n: int) -> AsyncSandbox:
        """The loop's middle part, on a created sandbox; returns the sandbox to kill."""
        for command, expected in COMMANDS:
            result = await self.call("command", lambda c=command: sbx.commands.run(c, timeout=self.call_timeout))
            if result.stdout != expected:
                raise LoadError(f"command: {command!r} printed {result.stdout!r}, not {expected!r}")
        content = uuid.uuid4().hex
        await self.call("write", lambda: sbx.files.write(FILE, content))
        self.held[sbx.sandbox_id] = content
        await self.read(sbx, content)
        if self.mix.pause_every and n % self.mix.pause_every == 0:
            await self.call("pause", lambda: sbx.pause())
            sbx = await self.call("connect", lambda: AsyncSandbox.connect(sbx.sandbox_id, **self.opts))
            await self.read(sbx, content)
        if self.mix.fork_every and n % self.mix.fork_every == 0:
            await self.fork(sbx, content)
        return sbx

    async def read(self, sbx: AsyncSandbox, content: str) -> None:
        got = await self.call("read", lambda: sbx.files.read(FILE))
        if got != content:
            raise LoadError(f"read: {FILE} of {sbx.sandbox_id} holds {got[:80]!r}, not what was written")

    async def fork(self, sbx: AsyncSandbox, content: str) -> None:
        copies = await self.call("fork", lambda: sbx.fork(count=1, timeout=300))
        failed = [c for c in copies if isinstance(c, Exception)]
        made = [c for c in copies if not isinstance(c, Exception)]
        for copy in made:
            self.held[copy.sandbox_id] = content
        try:
            if failed:
                raise LoadError(f"fork: {type(failed[0]).__name__}: {failed[0]}")
            for copy in made:
                await self.read(copy, content)
        finally:
            for copy in made:
                await self.end(copy)

    async def end(self, sbx: AsyncSandbox) -> None:
        """Kill a sandbox the client holds; one already gone is ended too."""
        try:
            await self.call("kill", lambda: sbx.kill())
        except LoadError as exc:
            if not isinstance(exc.__cause__, NotFoundException):
                self.report.errors.append(str(exc))
                return
        self.held.pop(sbx.sandbox_id, None)


async def bounded(op: str, make: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Await ``make()``, failing as `LoadError` (naming ``op``) when it errs or hangs."""
    try:
        return await asyncio.wait_for(make(), timeout)
    except TimeoutError:
        raise LoadError(f"{op}: no answer in {timeout:.0f} s") from None
    except Exception as exc:
        raise LoadError(f"{op}: {type(exc).__name__}: {str(exc)[:300]}") from exc


def prepare(
    url: str, key: str, *, clients: int, seconds: float, mix: Mix | None = None, call_timeout: float = 60
) -> Load:
    """A `Load` of ``clients`` clients that `Load.drive` runs for ``seconds``."""
    return Load(url, key, mix or Mix(), call_timeout, Report(clients, seconds), time.monotonic() + seconds)


async def run(
    url: str, key: str, *, clients: int, seconds: float, mix: Mix | None = None, call_timeout: float = 60
) -> Report:
    """Run ``clients`` looping clients for ``seconds`` and report what they saw."""
    load = prepare(url, key, clients=clients, seconds=seconds, mix=mix, call_timeout=call_timeout)
    await load.drive()
    return load.report


def served(
    data_root: Path, letter: str, *, half: int = 0, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[Server]:
    """A real `sandlot serve` of its own (runc instance ``t<pid><letter>``, a subnet of this
    test slot, data in ``data_root/<letter>``, ``env`` on top of its environment): see
    `tests._support.server.serving` for what is checked at its end."""
    return serving(data_root / letter, f"t{os.getpid()}{letter}", slot.subnet(180, half), env)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--pause-every", type=int, default=5)
    parser.add_argument("--fork-every", type=int, default=0)
    parser.add_argument("--url", help="a running server (default: start one of our own)")
    parser.add_argument("--key", default=os.environ.get("E2B_API_KEY"))
    args = parser.parse_args()
    mix = Mix(pause_every=args.pause_every, fork_every=args.fork_every)
    if args.url:
        print(asyncio.run(run(args.url, args.key, clients=args.clients, seconds=args.seconds, mix=mix)).summary())
        return
    with scratch_dir("sandlot-bench-") as root, served(root, "l") as server:
        print(asyncio.run(run(server.url, server.key, clients=args.clients, seconds=args.seconds, mix=mix)).summary())


if __name__ == "__main__":
    main()
