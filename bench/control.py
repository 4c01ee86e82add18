"""Control-plane throughput: ``GET /sandboxes/{id}`` from 64 concurrent clients for 10 s.

Runs against a running server (``sandlot serve``): creates one sandbox, hammers its detail
route, prints requests/s and p50/p99 latency, kills the sandbox.

    .venv/bin/python bench/control.py --url http://127.0.0.1:3000 --key "$(cat /var/lib/sandlot/api-key)"

The client shares the machine with the server, so the figure is a floor for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx


async def _worker(
    url: str,
    key: str,
    path: str,
    stop: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    # One client (one keep-alive connection) per simulated client: a shared httpx pool
    # serialises on its lock and measures httpx rather than the server.
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=30
    ) as client:
        await client.get(path)
        while (start := time.perf_counter()) < stop:
            response = await client.get(path)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors.append(response.status_code)


def _process(
    url: str, key: str, path: str, clients: int, stop: float, out: Any
) -> None:
    latencies: list[float] = []
    errors: list[int] = []

    async def run() -> None:
        await asyncio.gather(
            *(_worker(url, key, path, stop, latencies, errors) for _ in range(clients))
        )

    asyncio.run(run())
    out.put((latencies, errors))


def spread(
    target: Any, args: tuple[Any, ...], clients: int, processes: int, stop: float
) -> tuple[list[Any], list[Any]]:
    """Run ``clients`` simulated clients spread over ``processes`` processes until ``stop``:
    each process runs ``target(*args, its_clients, stop, queue)``, which puts one
    ``(latencies, errors)`` pair on the queue; the pairs come back concatenated."""
    queue: Any = multiprocessing.Queue()
    processes = max(1, min(processes, clients))
    per = [clients // processes + (i < clients % processes) for i in range(processes)]
    procs = [multiprocessing.Process(target=target, args=(*args, n, stop, queue)) for n in per]
    for p in procs:
        p.start()
    latencies: list[Any] = []
    errors: list[Any] = []
    for _ in procs:
        got_latencies, got_errors = queue.get()
        latencies += got_latencies
        errors += got_errors
    for p in procs:
        p.join()
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("E2B_API_URL", "http://127.0.0.1:3000")
    )
    parser.add_argument("--key", default=os.environ.get("E2B_API_KEY"))
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="client processes the clients are spread over (one Python process "
                             "cannot drive the server hard enough)")
    args = parser.parse_args()
    key = args.key or Path("/var/lib/sandlot/api-key").read_text().strip()
    with httpx.Client(
        base_url=args.url, headers={"X-API-Key": key}, timeout=60
    ) as client:
        created = client.post("/v2/sandboxes", json={"timeout": 300})
        created.raise_for_status()
        sid = created.json()["sandboxID"]
        try:
            stop = time.perf_counter() + 1.0 + args.seconds  # let every process connect first
            latencies, errors = spread(
                _process, (args.url, key, f"/sandboxes/{sid}"), args.clients, args.processes, stop
            )
            elapsed = args.seconds
        finally:
            client.delete(f"/sandboxes/{sid}")
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"GET /sandboxes/{{id}}: {args.clients} clients in {args.processes} processes, {elapsed:.0f} s, "
          f"{len(latencies)} requests, {len(errors)} errors")
    print(
        f"  {len(latencies) / elapsed:,.0f} requests/s   p50 {p50:.2f} ms   p99 {p99:.2f} ms"
    )


if __name__ == "__main__":
    main()
