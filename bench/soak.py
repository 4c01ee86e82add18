"""Soak: the mixed load of bench/load.py for minutes, watching the server's memory.

32 clients for 10 minutes by default. The server's resident memory (RSS of the ``sandlot
serve`` process, not of its sandboxes) is sampled every few seconds; the figure that counts is
its growth from the end of the warm-up (the first fifth of the run, when pools, caches and
the allocator's arenas settle) to the end of the load. Afterwards every sandbox is killed,
the server stopped, and the leak census of its instance must be empty (`bench.load.served`).
Passing means 0 errors, 0 leaks and RSS growth of at most 10 %.

    sudo .venv/bin/python -m bench.soak [--minutes 10] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

import psutil

from bench import load
from tests._support.server import Server, scratch_dir

GROWTH_LIMIT = 0.10
"""Issue 11: server RSS growth of at most 10 % over the soak."""


@dataclasses.dataclass
class SoakReport:
    load: load.Report
    rss: list[tuple[float, int]]
    """(seconds into the run, bytes) samples of the server's RSS."""
    warm: int
    """The RSS at the end of the warm-up."""
    end: int

    @property
    def growth(self) -> float:
        return self.end / self.warm - 1

    def summary(self) -> str:
        peak = max(b for _, b in self.rss)
        return (
            f"{self.load.summary()}\n"
            f"server RSS: {self.warm / 2**20:.1f} MiB after warm-up, {self.end / 2**20:.1f} MiB at the end "
            f"({self.growth:+.1%}), peak {peak / 2**20:.1f} MiB, {len(self.rss)} samples"
        )


async def soak(server: Server, *, clients: int, seconds: float, every: float = 5.0) -> SoakReport:
    """Run the mixed load for ``seconds`` while sampling the server's RSS every ``every`` s."""
    assert server.process is not None
    process = psutil.Process(server.process.pid)
    warmup = seconds / 5
    samples: list[tuple[float, int]] = []
    warm: list[int] = []
    loop = asyncio.get_running_loop()
    begin = loop.time()

    async def sample() -> None:
        while True:
            at = loop.time() - begin
            samples.append((at, process.memory_info().rss))
            if at >= warmup and not warm:
                warm.append(samples[-1][1])
            remaining = warmup - at
            await asyncio.sleep(remaining if 0 < remaining < every else every)

    sampler = asyncio.create_task(sample())
    try:
        report = await load.run(server.url, server.key, clients=clients, seconds=seconds)
    finally:
        sampler.cancel()
    end = process.memory_info().rss
    samples.append((loop.time() - begin, end))
    return SoakReport(report, samples, warm[0] if warm else samples[0][1], end)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with scratch_dir("sandlot-bench-") as root, load.served(root, "o") as server:
        report = asyncio.run(soak(server, clients=args.clients, seconds=args.minutes * 60))
        print(report.summary())
        if report.load.errors or report.growth > GROWTH_LIMIT:
            raise SystemExit(f"the soak failed; the server's data and log are in {server.data_dir}")


if __name__ == "__main__":
    main()
