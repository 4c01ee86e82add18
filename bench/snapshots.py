"""Snapshot benchmark: pause (checkpoint) and resume (restore) of an idle sandbox and of one
whose process holds 50 MiB, fork of both, and resume with 1 and with N other paused sandboxes.

Beside them, in the same run, the floor: a raw `criu dump` / `criu restore` of the same
50 MiB Python process outside any container (same CRIU binary, as root, `--shell-job`).

    sudo .venv/bin/python bench/snapshots.py [--cycles 20] [--forks 10] [--raw-runs 10] \
        [--others 200] [--others-budget 300]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import dataclasses
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandlot.config import Settings
from sandlot.runtime import cgroups, disk, images, models, mounts
from sandlot.runtime.drivers.runc import RuncDriver, host
from sandlot.runtime.drivers.runc import criu as runc_criu

MIB = 50
# bytearray() of this size is a fresh anonymous mapping: write one byte per page so that
# every page is really there (RSS ~50 MiB) and CRIU has to dump it.
HOLDER = (
    f"import time\nx = bytearray({MIB} * 2**20)\n"
    "for i in range(0, len(x), 4096):\n    x[i] = 1\n"
    "open('/tmp/touched', 'w').close()\ntime.sleep(10**6)\n"
)


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


class Phases:
    """Time spent in the driver's steps, per operation (patched onto the driver and modules)."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.totals: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, step: str, ms: float) -> None:
        if self.current is not None:
            self.totals[self.current][step] += ms

    def wrap_async(self, obj: Any, attr: str, label: Callable[..., str]) -> None:
        original = getattr(obj, attr)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.add(label(*args, **kwargs), (time.perf_counter() - started) * 1000)

        setattr(obj, attr, wrapper)

    def wrap_sync(self, obj: Any, attr: str, label: str | Callable[..., str]) -> None:
        original = getattr(obj, attr)
        name = label if callable(label) else (lambda *a, **k: label)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(name(*args, **kwargs), (time.perf_counter() - started) * 1000)

        setattr(obj, attr, wrapper)

    async def measure(self, op: str, fn: Callable[[], Awaitable[object]]) -> float:
        self.current = op
        started = time.perf_counter()
        try:
            await fn()
        finally:
            self.current = None
        ms = (time.perf_counter() - started) * 1000
        self.totals[op]["(total)"] += ms
        self.counts[op] += 1
        return ms

    def report(self) -> None:
        for op, steps in self.totals.items():
            n = self.counts[op] or 1
            total = steps["(total)"] / n
            print(f"\n{op}: mean {total:.1f} ms over {n}")
            accounted = 0.0
            for step, ms in sorted(steps.items(), key=lambda kv: -kv[1]):
                if step == "(total)":
                    continue
                nested = step.startswith("  ")
                accounted += 0 if nested else ms / n
                print(f"  {step:44} {ms / n:8.1f} ms")
            print(f"  {'(rest: python, state files, reaping init…)':44} {total - accounted:8.1f} ms")


def instrument(driver: RuncDriver, phases: Phases) -> None:
    phases.wrap_async(driver, "_criu_run", lambda argv, **k: f"{k['what']} (CRIU)")
    phases.wrap_async(driver, "_runc_cmd", lambda *a: f"runc {a[0]}")
    phases.wrap_async(host, "wait_init_quiet", lambda *a, **k: "wait for init's connections to close")
    phases.wrap_sync(driver, "_frozen", "read freezer.state")
    phases.wrap_async(driver.network, "remove_device", lambda *a, **k: "network: remove veth")
    phases.wrap_async(driver.network, "apply", lambda *a, **k: "network: apply rules")
    phases.wrap_async(driver, "_wire", lambda *a, **k: "network: wire a veth (init's hook)")
    phases.wrap_async(disk, "unmount", lambda *a, **k: "unmount disk (waits for loop device)")
    phases.wrap_sync(disk, "mount", "mount disk (loop)")
    phases.wrap_sync(
        mounts, "mount", lambda *a, **k: "mount overlay" if a[0] == "overlay" else "  mount (inside mount disk)"
    )
    phases.wrap_sync(host, "copy_sparse", "copy disk image (sparse)")
    phases.wrap_sync(mounts, "unmount", lambda target: "unmount overlay" if str(target).endswith("rootfs")
                     else "  umount2 (inside unmount disk)")
    phases.wrap_sync(driver, "_write_config", "write config.json")
    phases.wrap_sync(images, "seal", "seal images (manifest: sizes, XXH3)")
    phases.wrap_sync(images, "check", "check images against the manifest")
    phases.wrap_async(cgroups, "kill_all", lambda *a, **k: "kill the frozen processes")


async def start_holder(driver: RuncDriver, sid: str) -> None:
    proc = await driver.start(sandbox_id=sid, process=models.ProcessSpec(["python3", "-c", HOLDER]))
    await proc.aclose()
    for _ in range(200):
        check = await driver.start(sandbox_id=sid, process=models.ProcessSpec(["test", "-e", "/tmp/touched"]))
        code = (await check.wait()).exit_code
        await check.aclose()
        if code == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("the 50 MiB holder never touched its pages")
    memory = (await driver.stats(sandbox_id=sid)).memory_bytes
    if memory < MIB * 2**20:
        raise RuntimeError(f"sandbox {sid} holds only {memory / 2**20:.1f} MiB")
    print(f"# {sid}: cgroup memory {memory / 2**20:.1f} MiB", flush=True)


def make_private_dir(path: Path, group: int) -> Path:
    path.mkdir(mode=0o710)
    os.chmod(path, 0o710)
    os.chown(path, 0, group)
    return path


async def sandlot_figures(args: argparse.Namespace) -> tuple[list[Figure], Phases, str]:
    base = Settings.from_env().runtime
    phases = Phases()
    others_note = ""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-snap-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o711)
        settings = dataclasses.replace(base, data_dir=Path(tmp), instance="bench-snap", subnet="10.193.0.0/16")
        async with RuncDriver(settings) as driver:
            await driver.reconcile(known=())
            images = make_private_dir(Path(tmp) / "images", driver.settings.userns_base)
            instrument(driver, phases)
            serial = iter(range(10**9))
            try:
                await driver.create(spec=models.SandboxSpec(sandbox_id="snap-idle"))
                await driver.create(spec=models.SandboxSpec(sandbox_id="snap-50m"))
                await start_holder(driver, "snap-50m")

                async def cycles(sid: str, label: str, n: int, op: str = "") -> tuple[list[float], list[float]]:
                    pauses, resumes = [], []
                    for _ in range(n):
                        image = images / f"cp{next(serial)}"
                        pauses.append(await phases.measure(
                            f"pause {op or label}",
                            lambda image=image: driver.checkpoint(sandbox_id=sid, image_dir=image)))
                        resumes.append(await phases.measure(
                            f"resume {op or label}", lambda: driver.restore(sandbox_id=sid)))
                        shutil.rmtree(image)
                    return pauses, resumes

                # One untimed cycle each first: the first checkpoint of a sandbox pays once.
                for sid in ("snap-idle", "snap-50m"):
                    await cycles(sid, "warm-up", 1, op="warm-up")
                for sid, label in (("snap-idle", "idle"), ("snap-50m", f"{MIB} MiB")):
                    p, r = await cycles(sid, label, args.cycles)
                    figures += [Figure(f"pause, {label} sandbox", p), Figure(f"resume, {label} sandbox", r)]
                assert (await driver.stats(sandbox_id="snap-50m")).memory_bytes >= MIB * 2**20

                for sid, label in (("snap-idle", "idle"), ("snap-50m", f"{MIB} MiB")):
                    forks = []
                    for i in range(args.forks):
                        image = images / f"fork{next(serial)}"
                        child = f"{sid}-f{i}"
                        forks.append(await phases.measure(
                            f"fork {label}",
                            lambda sid=sid, child=child, image=image: driver.fork(
                                sandbox_id=sid, children=[models.SandboxSpec(sandbox_id=child)], image_dir=image
                            ),
                        ))
                        await driver.destroy(sandbox_id=child)
                        shutil.rmtree(image)
                    figures.append(Figure(f"fork (count 1), {label} sandbox", forks))

                # Resume with 1, then with N, other paused sandboxes present.
                others: list[str] = []

                async def add_other() -> None:
                    sid = f"snap-other-{len(others)}"
                    await driver.create(spec=models.SandboxSpec(sandbox_id=sid))
                    others.append(sid)
                    await driver.checkpoint(sandbox_id=sid, image_dir=images / sid)

                await add_other()
                _, r1 = await cycles("snap-idle", "idle", args.cycles, op="idle, 1 other paused")
                started = time.monotonic()
                while len(others) < args.others and time.monotonic() - started < args.others_budget:
                    await add_other()
                made_in = time.monotonic() - started
                if len(others) < args.others:
                    others_note = (f"only {len(others)} of {args.others} other paused sandboxes fit in "
                                   f"{args.others_budget:.0f} s")
                else:
                    others_note = f"{len(others) - 1} more created and paused in {made_in:.0f} s"
                paused = sum(1 for i in await driver.list() if i.state is models.SandboxState.PAUSED)
                _, rn = await cycles("snap-idle", "idle", args.cycles, op=f"idle, {len(others)} others paused")
                figures += [Figure("resume, idle, 1 other paused", r1),
                            Figure(f"resume, idle, {paused} others paused", rn)]
            finally:
                for info in await driver.list():
                    await driver.destroy(sandbox_id=info.sandbox_id)
                shutil.rmtree(images, ignore_errors=True)
    return figures, phases, others_note


# -- the floor: raw CRIU outside any container ---------------------------------------------


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raw_criu(criu: Path, runs: int) -> tuple[list[float], list[float]]:
    dumps, restores = [], []
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-snap-criu-", dir="/var/tmp") as tmp:
        for i in range(runs + 1):  # the first is a warm-up
            touched = Path(tmp) / "touched"
            touched.unlink(missing_ok=True)
            holder = HOLDER.replace("/tmp/touched", str(touched))
            proc = subprocess.Popen(["python3", "-c", holder], start_new_session=True, cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pid = proc.pid
            try:
                deadline = time.monotonic() + 20
                while not touched.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the raw 50 MiB holder never touched its pages")
                    time.sleep(0.01)
                if i == 1:
                    print(f"# raw holder: VmRSS {rss_mib(pid):.1f} MiB", flush=True)
                image = Path(tmp) / f"img{i}"
                image.mkdir()
                started = time.perf_counter()
                subprocess.run([criu, "dump", "-t", str(pid), "-D", image, "--shell-job", "-o", "dump.log"],
                               check=True, stdin=subprocess.DEVNULL)
                dumped = time.perf_counter()
                proc.wait(10)  # the dumped process was killed: reap it, or restore finds its pid taken
                started_restore = time.perf_counter()
                subprocess.run([criu, "restore", "-D", image, "--shell-job", "-d", "-o", "restore.log"],
                               check=True, stdin=subprocess.DEVNULL)
                restored = time.perf_counter()
                if rss_mib(pid) < MIB:
                    raise RuntimeError(f"restored holder holds only {rss_mib(pid):.1f} MiB")
                if i:
                    dumps.append((dumped - started) * 1000)
                    restores.append((restored - started_restore) * 1000)
            finally:
                with contextlib_suppress():
                    os.kill(pid, signal.SIGKILL)
                with contextlib_suppress():
                    os.waitpid(pid, 0)  # the restored process is ours (subreaper) after criu -d
                with contextlib_suppress():
                    proc.wait(1)
                shutil.rmtree(Path(tmp) / f"img{i}", ignore_errors=True)
    return dumps, restores


class contextlib_suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return isinstance(exc[1], (ProcessLookupError, ChildProcessError, subprocess.TimeoutExpired))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="pause/resume cycles per sandbox")
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--raw-runs", type=int, default=10)
    parser.add_argument("--others", type=int, default=200, help="other paused sandboxes for the many-paused case")
    parser.add_argument("--others-budget", type=float, default=300, help="seconds to spend making them")
    parser.add_argument("--no-breakdown", action="store_true")
    args = parser.parse_args()
    become_subreaper()
    cache_dir = Settings.from_env().runtime.cache_dir
    criu = cache_dir / "criu" / "current" / "criu"
    # The floor runs the same CRIU binary with the same kerndat cache as the driver's runs.
    runc_criu.keep_kerndat_tmpfs(cache_dir / "criu")
    version = subprocess.run([criu, "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]

    started = datetime.now(UTC)
    dumps, restores = raw_criu(criu, args.raw_runs)
    raw_dump = Figure(f"raw `criu dump` of the {MIB} MiB process", dumps)
    raw_restore = Figure(f"raw `criu restore -d` of the {MIB} MiB process", restores)
    figures, phases, note = asyncio.run(sandlot_figures(args))

    print(f"# {started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"kernel {platform.release()}, {version}")
    print(f"{'what':48} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for f in [raw_dump, raw_restore, *figures]:
        print(f"{f.name:48} {len(f.samples):5} {f.p50:8.2f} {f.p99:8.2f}")
    by = {f.name: f for f in figures}
    resume = by[f"resume, {MIB} MiB sandbox"]
    pause = by[f"pause, {MIB} MiB sandbox"]
    fork = by[f"fork (count 1), {MIB} MiB sandbox"]
    print(f"\nresume ({MIB} MiB) p50 / raw criu restore p50: {resume.p50 / raw_restore.p50:.2f}x "
          f"(target <= 1.5x); resume p50 {resume.p50:.1f} ms (target <= 250 ms)")
    print(f"pause ({MIB} MiB) p50 / raw criu dump p50: {pause.p50 / raw_dump.p50:.2f}x; "
          f"pause p50 {pause.p50:.1f} ms (target <= 250 ms)")
    print(f"fork ({MIB} MiB) p50 {fork.p50:.1f} ms (target <= 400 ms)")
    many = next(f for f in figures if "others paused" in f.name)
    one = by["resume, idle, 1 other paused"]
    print(f"resume with {many.name.split(', ')[2]} / with 1: {many.p50 / one.p50:.2f}x (p50); {note}")
    if not args.no_breakdown:
        print("\n# where the time goes (mean per operation; driver steps timed in-process)")
        phases.report()


if __name__ == "__main__":
    main()
