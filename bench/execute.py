"""`POST /execute` benchmark: Python hello world end to end through a real `sandlot serve`.

Latency at concurrency 1 (p50, p99), then sustained runs per second at concurrency 2, 8 and 32
for `--seconds` each (every answer checked: status 200 and stdout "hello"; anything else is
a failed run), and the same at concurrency 8 with runner sandboxes not reused (a fresh one per
run, `SANDLOT_EXECUTE_REUSE=0`). Beside them, in the same run: the floor, a raw `python3 -c`
of the same program (Debian's python3, as the runner template has it), and, where dockerd can
be started, `docker run --rm --network none` of the same (bench/docker.py).

The load comes from client processes on the same 2 cores (one httpx.AsyncClient, one
keep-alive connection, per simulated client), so the figures include the clients' own CPU.

    sudo .venv/bin/python bench/execute.py [--runs 200] [--seconds 60] [--no-docker]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import docker as docker_bench
import httpx
from control import spread
from runtime import Figure
from sdk import Server, sandlot_server

PROGRAM = 'print("hello")'
BODY = {"language": "python", "code": PROGRAM}
P50_TARGET_MS = 40.0
RPS_TARGET = 40.0
P99_OVER_P50_TARGET = 5.0


async def _client(url: str, key: str, stop: float, latencies: list[float], failures: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120) as client:
        while (started := time.perf_counter()) < stop:
            try:
                answer = await client.post("/execute", json=BODY)
                good = answer.status_code == 200 and answer.json()["run"]["stdout"] == "hello\n"
                why = "" if good else f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
            latencies.append(time.perf_counter() - started)
            if why:
                failures.append(why)


def _process(url: str, key: str, clients: int, stop: float, out: Any) -> None:
    latencies: list[float] = []
    failures: list[str] = []

    async def run() -> None:
        await asyncio.gather(*(_client(url, key, stop, latencies, failures) for _ in range(clients)))

    asyncio.run(run())
    out.put((latencies, failures))


def load(server: Server, clients: int, seconds: float, processes: int) -> tuple[float, Figure, list[str]]:
    """Runs/s, latency and failures of `clients` concurrent clients for `seconds`."""
    stop = time.perf_counter() + 1.0 + seconds  # a second for every process to start
    latencies, failures = spread(_process, (server.url, server.key), clients, processes, stop)
    return len(latencies) / (seconds + 1.0), Figure(f"c={clients}", [x * 1000 for x in latencies]), failures


def sequential(server: Server, runs: int) -> Figure:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=60) as client:
        for _ in range(10):  # warm: connection, first runs of each runner sandbox
            client.post("/execute", json=BODY).raise_for_status()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            answer = client.post("/execute", json=BODY)
            samples.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200 and answer.json()["run"]["stdout"] == "hello\n", answer.text
    return Figure("POST /execute, concurrency 1", samples)


def raw_python(runs: int) -> Figure:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-c", PROGRAM], check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    return Figure("raw `python3 -c` (floor)", samples)


def docker_python(runs: int) -> Figure:
    with docker_bench.base_image() as docker:
        argv = [
            *docker, "run", "--rm", "--network", "none", "--user", "0", docker_bench.IMAGE, "python3", "-c", PROGRAM
        ]
        name = "`docker run --rm --network none IMAGE python3 -c`"
        return Figure(name, docker_bench.timed_runs(argv, runs, warmup=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="sequential runs at concurrency 1")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each sustained load")
    parser.add_argument("--docker-runs", type=int, default=20)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups of `finally`

    rows: list[tuple[Figure, float | None, int]] = []
    with sandlot_server(None) as server:
        single = sequential(server, args.runs)
        rows.append((single, None, 0))
        for clients in (2, 8, 32):
            rps, figure, failures = load(server, clients, args.seconds, args.client_processes)
            figure.name = f"sustained, concurrency {clients}"
            rows.append((figure, rps, len(failures)))
            print(f"{figure.name}: {rps:.1f} runs/s, {len(failures)} failed {failures[:3]}", flush=True)
    with sandlot_server(None, {"SANDLOT_EXECUTE_REUSE": "0"}) as server:
        rps, figure, failures = load(server, 8, args.seconds, args.client_processes)
        figure.name = "sustained, concurrency 8, a fresh sandbox per run"
        rows.append((figure, rps, len(failures)))
    floor = raw_python(args.runs)
    docker = None
    if not args.no_docker:
        try:
            docker = docker_python(args.docker_runs)
        except docker_bench.DockerUnavailable as exc:
            print(f"Docker baseline skipped: {exc}", flush=True)

    print(f"\n# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"kernel {platform.release()}")
    width = max(len(f.name) for f, _, _ in rows) + 2
    print(f"{'what':{width}} {'runs':>6} {'p50 ms':>8} {'p99 ms':>8} {'runs/s':>7} {'failed':>6}")
    for f in [floor, *([docker] if docker else [])]:
        print(f"{f.name:{width}} {len(f.samples):6} {f.p50:8.2f} {f.p99:8.2f}")
    for f, rps, failed in rows:
        rate = f"{rps:7.1f}" if rps is not None else f"{'':7}"
        print(f"{f.name:{width}} {len(f.samples):6} {f.p50:8.2f} {f.p99:8.2f} {rate} {failed:6}")
    print()
    verdict = "met" if single.p50 <= P50_TARGET_MS else "not met"
    line = (f"p50 at concurrency 1: {single.p50:.1f} ms, target <= {P50_TARGET_MS:.0f} ms: {verdict}; "
            f"{single.p50 / floor.p50:.2f}x raw python3 -c")
    if docker:
        line += f"; `docker run` is {docker.p50 / single.p50:.1f}x slower"
    print(line)
    for f, rps, failed in rows[1:]:
        ratio = f.p99 / f.p50
        print(f"{f.name}: {rps:.1f} runs/s "
              f"(target >= {RPS_TARGET:.0f}: {'met' if rps and rps >= RPS_TARGET else 'not met'}); "
              f"p99 {f.p99:.0f} ms = {ratio:.1f}x its p50 of {f.p50:.0f} ms (target <= {P99_OVER_P50_TARGET:.0f}x: "
              f"{'met' if ratio <= P99_OVER_P50_TARGET else 'not met'}); {failed} failed")


if __name__ == "__main__":
    main()
