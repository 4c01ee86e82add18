"""Sandboxes for runtime tests, and a helper that runs a command to completion."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sandlot.runtime import base, models
from sandlot.runtime.drivers.runc import RuncDriver

_ids = itertools.count()


def new_id() -> str:
    return f"sb-{os.getpid()}-{next(_ids)}"


def cgroup2_mount() -> tuple[str, str, str]:
    """Where cgroup2 is mounted, its mount options and its own options."""
    with open("/proc/self/mountinfo") as f:
        fields, rest = next(line.split(" - ", 1) for line in f if " - cgroup2 " in line)
    return fields.split()[4], fields.split()[5], rest.split()[2]


@dataclasses.dataclass
class Result:
    exit: models.ExitStatus
    stdout: str
    stderr: str


async def collect(proc: base.Process) -> Result:
    out, err = [], []
    async for stream, chunk in proc.output():
        (out if stream is base.OutputStream.STDOUT else err).append(chunk)
    status = await proc.wait()
    return Result(status, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace"))


async def run(driver: RuncDriver, sandbox_id: str, *argv: str, **kw: object) -> Result:
    """Run ``argv`` in the sandbox (as ``user`` unless told) and collect what it printed."""
    proc = await driver.start(sandbox_id=sandbox_id, process=models.ProcessSpec(list(argv), **kw))  # type: ignore[arg-type]
    try:
        return await collect(proc)
    finally:
        await proc.aclose()


SandboxFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def make_sandbox(driver: RuncDriver) -> AsyncIterator[SandboxFactory]:
    """Create sandboxes (internet off unless asked for) and destroy them after the test."""
    made: list[str] = []

    async def make(**kw: object) -> str:
        kw.setdefault("network", models.NetworkPolicy(internet=False))
        spec = models.SandboxSpec(sandbox_id=new_id(), **kw)  # type: ignore[arg-type]
        await driver.create(spec=spec)
        made.append(spec.sandbox_id)
        return spec.sandbox_id

    yield make
    for sid in made:
        if sid in {i.sandbox_id for i in await driver.list()}:
            await driver.destroy(sandbox_id=sid)


@pytest.fixture
async def sandbox(make_sandbox: SandboxFactory) -> str:
    return await make_sandbox()
