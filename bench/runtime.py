"""Runtime benchmark: sandbox create -> first process exited -> destroy, and exec of `true`.

Beside them, in the same run, the floors: a raw `runc run /bin/true` on the same template
rootfs (no overlay, disk, network or init) and a raw fork/exec of `true`. And one step that
every create, restore and fork makes: moving a new process into a cgroup after a quiet spell,
which waits for an RCU grace period unless the kernel favours dynamic moves
(`sandlot.runtime.cgroups.favor_dynamic_moves`; the driver turns that on).

    sudo .venv/bin/python bench/runtime.py [--runs 50] [--exec-runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sandlot.config import Settings
from sandlot.runtime import cgroups, models
from sandlot.runtime.drivers.runc import RuncDriver


@dataclasses.dataclass
class Figure:
    name: str
    samples: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


def raw_runc(rootfs: Path, runs: int) -> list[float]:
    """`runc run` of /bin/true on the template rootfs, read-only, default namespaces."""
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
        config = json.loads((bundle / "config.json").read_text())
        config["root"] = {"path": str(rootfs), "readonly": True}
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/true"]
        (bundle / "config.json").write_text(json.dumps(config))
        root = Path(tmp) / "runc"
        samples = []
        for i in range(runs):
            started = time.perf_counter()
            subprocess.run(["runc", "--root", root, "run", "--bundle", bundle, f"bench-raw-{i}"],
                           check=True, stdin=subprocess.DEVNULL)
            samples.append((time.perf_counter() - started) * 1000)
        return samples


def raw_fork_exec(runs: int) -> list[float]:
    true = shutil.which("true") or "/bin/true"
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        pid = os.posix_spawn(true, [true], os.environ)
        os.waitpid(pid, 0)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def cgroup_moves(runs: int) -> list[float]:
    """Write a new process's pid into a fresh cgroup's ``cgroup.procs``, 200 ms after the last
    move (the grace period the first move of a burst waits for is what this catches)."""
    group = Path("/sys/fs/cgroup") / ("" if cgroups.is_v2() else "pids") / f"sandlot-bench-{os.getpid()}"
    group.mkdir()
    samples = []
    try:
        for _ in range(runs):
            time.sleep(0.2)
            with subprocess.Popen(["sleep", "10"]) as child:
                started = time.perf_counter()
                (group / "cgroup.procs").write_text(str(child.pid))
                samples.append((time.perf_counter() - started) * 1000)
                child.kill()
    finally:
        group.rmdir()
    return samples


async def sandlot_figures(runs: int, exec_runs: int) -> list[Figure]:
    base = Settings.from_env().runtime
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o711)
        settings = dataclasses.replace(base, data_dir=Path(tmp), instance="bench", subnet="10.199.0.0/16")
        async with RuncDriver(settings) as driver:
            await driver.reconcile(known=())
            create, first, cycle, destroy = [], [], [], []
            true = models.ProcessSpec(["true"])
            for i in range(runs):
                sid = f"bench-{i}"
                started = time.perf_counter()
                await driver.create(spec=models.SandboxSpec(sandbox_id=sid))
                created = time.perf_counter()
                proc = await driver.start(sandbox_id=sid, process=true)
                await proc.wait()
                await proc.aclose()
                exited = time.perf_counter()
                await driver.destroy(sandbox_id=sid)
                done = time.perf_counter()
                create.append((created - started) * 1000)
                first.append((exited - started) * 1000)
                destroy.append((done - exited) * 1000)
                cycle.append((done - started) * 1000)

            await driver.create(spec=models.SandboxSpec(sandbox_id="bench-exec"))

            async def exec_true() -> None:
                proc = await driver.start(sandbox_id="bench-exec", process=true)
                await proc.wait()
                await proc.aclose()

            for _ in range(10):
                await exec_true()
            execs = [await timed(exec_true) for _ in range(exec_runs)]
            await driver.destroy(sandbox_id="bench-exec")
    return [
        Figure("sandlot create (ready for a process)", create),
        Figure("sandlot create -> first `true` exited", first),
        Figure("sandlot destroy", destroy),
        Figure("sandlot create -> `true` -> destroy", cycle),
        Figure("sandlot exec `true` in a running sandbox", execs),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--exec-runs", type=int, default=200)
    args = parser.parse_args()
    settings = Settings.from_env().runtime
    rootfs = (settings.templates_dir / "base" / "current").resolve() / "rootfs"

    figures = asyncio.run(sandlot_figures(args.runs, args.exec_runs))
    runc = Figure("raw `runc run /bin/true`", raw_runc(rootfs, args.runs))
    fork = Figure("raw fork/exec of `true`", raw_fork_exec(args.exec_runs))
    favoured = cgroups.favor_dynamic_moves()
    moves = Figure(f"first cgroup move of a burst ({'favordynmods' if favoured else 'default lock'})", cgroup_moves(30))

    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"kernel {platform.release()}")
    print(f"{'what':48} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for f in [runc, fork, moves, *figures]:
        print(f"{f.name:48} {len(f.samples):5} {f.p50:8.2f} {f.p99:8.2f}")
    first = next(f for f in figures if "first" in f.name)
    execs = figures[-1]
    print(f"\ncreate -> first exec p50 / raw runc run p50: {first.p50 / runc.p50:.2f}x (target <= 2x)")
    print(f"exec `true` p50 / raw fork/exec p50: {execs.p50 / fork.p50:.1f}x; "
          f"exec p50 {execs.p50:.2f} ms (target <= 10 ms)")


if __name__ == "__main__":
    main()
