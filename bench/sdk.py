"""SDK benchmark: create -> first command -> kill, and `commands.run("true")`, through the official
`e2b` SDK and the sandlot SDK against a real `sandlot serve`; `GET /sandboxes/{id}` throughput.

Beside them, in the same run: the floors of bench/runtime.py (raw `runc run /bin/true` on the
template rootfs, raw fork/exec of `true`) and, where dockerd can be started, `docker run` and
`docker exec` of the same `true` (bench/docker.py). The server is the tests' (`serving` of
tests/_support/server.py): a subprocess on a free loopback port with its own data directory,
runc instance and subnet; at the end its sandboxes are killed, it gets SIGTERM, and anything it
left on the host is reported and swept.

    sudo .venv/bin/python bench/sdk.py [--runs 100] [--exec-runs 200] [--no-docker]

`--server-log FILE` runs the server with `-v` (one debug line per host command, with its
duration) and keeps its log there: that is how "where the time goes" is read, at the cost of
the logging itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _checkout  # noqa: F401 -- first: the imports of sandlot and tests below need it
import docker as docker_bench
import httpx
from control import _process as get_from_clients
from control import spread
from runtime import Figure, raw_fork_exec, raw_runc

from sandlot.config import Settings
from tests._support.server import Server, scratch_dir, serving

E2B_PUBLISHED_MS = 150.0
CREATE_TARGET_MS = 60.0
RUN_TARGET_MS = 10.0
GET_TARGET_RPS = 1500.0


@contextlib.contextmanager
def sandlot_server(log_to: Path | None, settings: dict[str, str] | None = None) -> Iterator[Server]:
    """A `sandlot serve` with its own data directory, instance and subnet, and ``settings`` as
    its ``SANDLOT_*`` variables (the caller's own are not passed on). With ``log_to`` it runs
    with ``-v`` and its log is copied there at the end. A server that does not stop cleanly
    or leaves something behind is reported on stderr (and swept), as a bench is not a test."""
    with scratch_dir("sandlot-bench-sdk-") as root:
        log = root / "server" / "server.log"
        try:
            with serving(root / "server", "benchsdk", "10.197.0.0/16", settings, drop=("E2B_", "SANDLOT_"),
                         verbose=log_to is not None, strict=False) as server:
                assert server.process is not None
                print(f"sandlot serve pid {server.process.pid} at {server.url}", flush=True)
                yield server
        finally:
            if log_to and log.exists():
                shutil.copyfile(log, log_to)


def sdk_figures(
    label: str, create: Callable[[], contextlib.AbstractContextManager[Any]], runs: int, exec_runs: int
) -> list[Figure]:
    """create -> first `true` -> kill (the SDK's context manager kills on exit), then
    `commands.run("true")` in one sandbox."""
    created, first, cycle = [], [], []
    for i in range(3 + runs):  # three uncounted: first imports, connections, spare disks
        started = time.perf_counter()
        with create() as sbx:
            made = time.perf_counter()
            sbx.commands.run("true")
            ran = time.perf_counter()
        done = time.perf_counter()
        if i >= 3:
            created.append((made - started) * 1000)
            first.append((ran - started) * 1000)
            cycle.append((done - started) * 1000)
    with create() as sbx:
        for _ in range(10):
            sbx.commands.run("true")
        execs = []
        for _ in range(exec_runs):
            started = time.perf_counter()
            sbx.commands.run("true")
            execs.append((time.perf_counter() - started) * 1000)
    return [
        Figure(f"{label}: create", created),
        Figure(f"{label}: create -> first run('true') done", first),
        Figure(f"{label}: create -> run('true') -> kill", cycle),
        Figure(f"{label}: commands.run('true')", execs),
    ]


@dataclasses.dataclass
class Throughput:
    requests: int
    errors: int
    seconds: float
    latency: Figure

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def get_throughput(server: Server, clients: int, seconds: float, processes: int) -> Throughput:
    """`GET /sandboxes/{id}` of one sandbox from `clients` keep-alive httpx.AsyncClients,
    spread over `processes` client processes (bench/control.py's worker)."""
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=60) as client:
        created = client.post("/v2/sandboxes", json={"timeout": 300})
        created.raise_for_status()
        sid = created.json()["sandboxID"]
        try:
            stop = time.perf_counter() + 1.0 + seconds  # a second for every process to connect
            asked = (server.url, server.key, f"/sandboxes/{sid}")
            latencies, errors = spread(get_from_clients, asked, clients, processes, stop)
        finally:
            client.delete(f"/sandboxes/{sid}")
    latency = Figure("GET /sandboxes/{id}", [x * 1000 for x in latencies])
    return Throughput(len(latencies), len(errors), seconds, latency)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="create -> first command -> kill cycles per SDK")
    parser.add_argument("--exec-runs", type=int, default=200, help="commands.run('true') per SDK")
    parser.add_argument("--docker-runs", type=int, default=20)
    parser.add_argument("--docker-exec-runs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--server-log", type=Path, help="run the server with -v and keep its log here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups of `finally`

    import e2b

    import sandlot

    figures: list[Figure] = []
    with sandlot_server(args.server_log) as server:
        os.environ |= {"E2B_API_URL": server.url, "E2B_SANDBOX_URL": server.url, "E2B_API_KEY": server.key}
        e2b_label = f"e2b {importlib.metadata.version('e2b')}"
        figures += sdk_figures(e2b_label, e2b.Sandbox.create, args.runs, args.exec_runs)
        try:
            figures += sdk_figures(
                "sandlot SDK",
                lambda: sandlot.Sandbox.create(api_url=server.url, api_key=server.key),
                args.runs,
                args.exec_runs,
            )
        except Exception as exc:  # noqa: BLE001 -- the SDK is being finished beside this bench: report, go on
            print(f"sandlot SDK skipped: {type(exc).__name__}: {exc}", flush=True)
        throughput = get_throughput(server, args.clients, args.seconds, args.client_processes)

    settings = Settings.from_env().runtime
    rootfs = (settings.templates_dir / "base" / "current").resolve() / "rootfs"
    runc = Figure("raw `runc run /bin/true`", raw_runc(rootfs, args.runs))
    fork = Figure("raw fork/exec of `true`", raw_fork_exec(args.exec_runs))
    docker: dict[str, Figure] = {}
    if not args.no_docker:
        try:
            run, exec_ = docker_bench.docker_figures(args.docker_runs, args.docker_exec_runs)
            docker = {"run": run, "exec": exec_}
        except docker_bench.DockerUnavailable as exc:
            print(f"Docker baseline skipped: {exc}", flush=True)

    print(f"\n# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"kernel {platform.release()}")
    width = max(len(f.name) for f in [*figures, runc, fork, *docker.values()]) + 2
    print(f"{'what':{width}} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for f in [runc, fork, *docker.values(), *figures, throughput.latency]:
        print(f"{f.name:{width}} {len(f.samples):5} {f.p50:8.2f} {f.p99:8.2f}")
    print(f"{'GET /sandboxes/{id} throughput':{width}} {throughput.rps:,.0f} requests/s, {args.clients} clients, "
          f"{args.seconds:.0f} s, {throughput.errors} errors")

    print()
    by_name = {f.name: f for f in figures}
    for label in dict.fromkeys(f.name.split(":")[0] for f in figures):
        first = by_name[f"{label}: create -> first run('true') done"]
        cycle = by_name[f"{label}: create -> run('true') -> kill"]
        run = by_name[f"{label}: commands.run('true')"]
        verdict = "met" if first.p50 <= CREATE_TARGET_MS else "not met"
        print(f"{label}: create -> first command p50 {first.p50:.1f} ms: {_ratio(first.p50, E2B_PUBLISHED_MS)} E2B's "
              f"published ~150 ms; target <= {CREATE_TARGET_MS:.0f} ms: {verdict}; "
              f"{_ratio(first.p50, runc.p50)} raw runc run")
        if "run" in docker:
            print(f"{label}: create -> run -> kill p50 {cycle.p50:.1f} ms: {_ratio(cycle.p50, docker['run'].p50)} "
                  f"`docker run --rm` ({docker['run'].p50:.0f} ms)")
        verdict = "met" if run.p50 <= RUN_TARGET_MS else "not met"
        line = (f"{label}: commands.run('true') p50 {run.p50:.2f} ms: target <= {RUN_TARGET_MS:.0f} ms: {verdict}; "
                f"{_ratio(run.p50, fork.p50)} raw fork/exec")
        if "exec" in docker:
            faster = docker["exec"].p50 / run.p50
            line += f"; `docker exec` is {faster:.1f}x slower (target >= 5x: {'met' if faster >= 5 else 'not met'})"
        print(line)
    verdict = "met" if throughput.rps >= GET_TARGET_RPS else "not met"
    print(f"GET /sandboxes/{{id}}: {throughput.rps:,.0f} requests/s = {_ratio(throughput.rps, GET_TARGET_RPS)} the "
          f"{GET_TARGET_RPS:,.0f} req/s target: {verdict}")


if __name__ == "__main__":
    main()
