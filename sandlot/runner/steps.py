"""One request of ``POST /execute`` in one runner sandbox: write its files, compile, run, measure.

Every limit is enforced from outside the program, so nothing it does can lift one:

- wall time: the program's process group is killed at ``timeout``;
- CPU time: the sandbox's cgroup counts the CPU of all its processes; a watcher reads it
  exactly when the budget could first be spent at the sandbox's CPU rate (so it reads rarely
  and never late by more than a few milliseconds) and kills the program when it is;
- memory: the cgroup's limit is set for the step; the kernel's OOM killer ends the program,
  and the cgroup's OOM count tells an OOM kill from any other SIGKILL;
- output: stdout and stderr together are cut at ``output_limit`` and the program is killed.

A step's memory peak is the peak resident memory of the program and the processes it waited
for, as the sandbox's init saw it when it reaped the program: the cgroup's own peak would also
count the page cache an earlier step or run left charged to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from collections.abc import Mapping, Sequence

from sandlot.runner import models
from sandlot.runner.languages import Language
from sandlot.runtime import base
from sandlot.runtime import models as runtime

__all__ = ["StepLimits", "run_program", "run_step"]

_STDIN_CHUNK = 64 * 1024
_EXIT_GRACE = 10.0
"""Seconds a killed program may take to be reaped before the run counts as broken."""


@dataclasses.dataclass(frozen=True)
class StepLimits:
    timeout: float
    output_limit: int
    cpu_time: float | None = None


async def run_program(
    driver: base.RuntimeDriver,
    sandbox_id: str,
    language: Language,
    version: str,
    request: models.ExecuteRequest,
    *,
    limits: runtime.Limits,
    network: runtime.NetworkPolicy,
    max_limits: runtime.Limits,
) -> models.ExecuteResult:
    """Compile (when the language is compiled) and run ``request``'s program in a fresh
    runner sandbox, with the run step under ``limits`` and ``network``."""
    if request.files is not None:
        files = {f.name: f.data for f in request.files}
        entry = request.files[0].name
    else:
        files = {language.entry: (request.code or "").encode()}
        entry = language.entry
    await driver.put_files(sandbox_id=sandbox_id, files=files)
    result = models.ExecuteResult(language=language.name, version=version)
    step = StepLimits(timeout=request.timeout, output_limit=request.output_limit, cpu_time=request.cpu_time)
    if language.compile is not None:
        compiler = dataclasses.replace(limits, memory_mb=language.compile_memory_mb).clamp(max_limits)
        await driver.update(sandbox_id=sandbox_id, limits=compiler)
        result.compile = await run_step(
            driver, sandbox_id, language.compile_argv(entry), env=language.env, stdin=None, compile=True,
            limits=dataclasses.replace(step, timeout=language.compile_timeout, cpu_time=None),
        )
        if result.compile.status != "ok":
            return result
    await driver.update(sandbox_id=sandbox_id, limits=limits, network=network)
    result.run = await run_step(
        driver, sandbox_id, language.run_argv(entry, request.args), env={**language.env, **request.env},
        stdin=request.stdin.encode(), limits=step,
    )
    return result


async def run_step(
    driver: base.RuntimeDriver,
    sandbox_id: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: bytes | None,
    limits: StepLimits,
    compile: bool = False,
) -> models.Stage:
    """Run ``argv`` to its end under ``limits`` and say how it went."""
    before = await driver.stats(sandbox_id=sandbox_id)
    started = time.monotonic()
    proc = await driver.start(
        sandbox_id=sandbox_id, process=runtime.ProcessSpec(list(argv), env=env, stdin=bool(stdin))
    )
    out, err = bytearray(), bytearray()
    stopped: str | None = None  # why we killed it: "timeout" or "output_limit"

    async def kill(why: str) -> None:
        nonlocal stopped
        stopped = stopped or why
        with contextlib.suppress(Exception):
            await proc.signal(signal.SIGKILL)

    async def feed() -> None:
        assert stdin is not None
        with contextlib.suppress(Exception):  # a program may exit without reading it all
            for i in range(0, len(stdin), _STDIN_CHUNK):
                await proc.write_stdin(stdin[i : i + _STDIN_CHUNK])
            await proc.close_stdin()

    async def watch_cpu(budget_ns: int) -> None:
        while True:
            used = (await driver.stats(sandbox_id=sandbox_id)).cpu_usage_ns - before.cpu_usage_ns
            if used >= budget_ns:
                await kill("timeout")
                return
            await asyncio.sleep(max(0.005, (budget_ns - used) / 1e9 / max(before.cpu_cores, 0.01)))

    async def pump() -> None:
        async for stream, chunk in proc.output():
            buffer = out if stream is base.OutputStream.STDOUT else err
            room = limits.output_limit - len(out) - len(err)
            buffer += chunk[:room]
            if len(chunk) > room:
                await kill("output_limit")
                return

    helpers = []
    if stdin:
        helpers.append(asyncio.ensure_future(feed()))
    if limits.cpu_time is not None:
        helpers.append(asyncio.ensure_future(watch_cpu(int(limits.cpu_time * 1e9))))
    try:
        try:
            async with asyncio.timeout(limits.timeout):
                await pump()
        except TimeoutError:
            await kill("timeout")
        async with asyncio.timeout(_EXIT_GRACE):
            status = await proc.wait()
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await proc.aclose()
    wall = time.monotonic() - started
    after = await driver.stats(sandbox_id=sandbox_id)
    return models.Stage(
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        exit_code=status.exit_code,
        signal=signal.Signals(status.signal).name if status.signal else None,
        status=_status(status, stopped, after.oom_kills > before.oom_kills, compile),
        wall_ms=round(wall * 1000, 2),
        cpu_ms=round((after.cpu_usage_ns - before.cpu_usage_ns) / 1e6, 2),
        memory_peak_kb=status.max_rss_kb if status.max_rss_kb is not None else after.memory_peak_bytes // 1024,
        truncated=stopped == "output_limit",
    )


def _status(status: runtime.ExitStatus, stopped: str | None, oom: bool, compile: bool) -> models.Status:
    if stopped == "timeout":
        return "timeout"
    if oom and not status.ok:
        return "oom"
    if stopped == "output_limit":
        return "output_limit"
    if not status.ok:
        return "compile_error" if compile else "runtime_error"
    return "ok"
