"""The rules of the driver contract, run on `FakeDriver` and on real runc alike, so that the
fake the lifecycle tests stand on (tests/lifecycle/test_state_machine.py) cannot drift from
what runc does: which state allows which call, and which error each refusal raises."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

import pytest

from sandlot.config import Settings
from sandlot.runtime import base, errors, models
from sandlot.runtime.drivers.fake import FakeDriver
from sandlot.runtime.drivers.runc import RuncDriver
from tests import conftest
from tests.runtime import test_checkpoint
from tests.runtime.conftest import new_id, run

checkpoint_images = test_checkpoint.images
"""A directory for checkpoints that CRIU can restore from."""

RUNNING, PAUSED = models.SandboxState.RUNNING, models.SandboxState.PAUSED
SLEEP = models.ProcessSpec(["sleep", "infinity"], tag="contract")


class Driver(base.RuntimeDriver, base.Checkpointing, base.Forking, base.Snapshotting, base.Restarting, Protocol):
    """A driver with every capability, as both of these are."""


async def tags(driver: Driver, sandbox_id: str) -> list[str]:
    return [p.tag for p in await driver.processes(sandbox_id=sandbox_id)]


def spec(**kw: object) -> models.SandboxSpec:
    return models.SandboxSpec(sandbox_id=new_id(), network=models.NetworkPolicy(internet=False), **kw)  # type: ignore[arg-type]


async def keeps_the_contract(driver: Driver, images: Path) -> None:
    """Every move between states that the lifecycle makes, and every one it must be refused."""
    made = spec()
    info = await driver.create(spec=made)
    sid = made.sandbox_id
    assert (info.state, info.checkpoint) == (RUNNING, None) and info.init_pid > 0
    try:
        with pytest.raises(errors.SandboxExists):
            await driver.create(spec=made)
        with pytest.raises(errors.TemplateNotFound):
            await driver.create(spec=spec(template="nosuchtemplate"))
        with pytest.raises(ValueError):
            await driver.create(spec=dataclasses.replace(made, sandbox_id="Not_An_Id"))
        echo = await run(driver, sid, "echo", "hi")  # type: ignore[arg-type]
        assert (echo.stdout, echo.exit.ok) == ("hi\n", True)
        with pytest.raises(errors.ProcessStartError) as refused:
            await driver.start(sandbox_id=sid, process=models.ProcessSpec(["nosuchprogram"]))
        assert refused.value.errno == errno.ENOENT
        sleeper = await driver.start(sandbox_id=sid, process=SLEEP)
        assert await tags(driver, sid) == ["contract"]
        with pytest.raises(errors.SandboxStateError):
            await driver.restore(sandbox_id=sid)
        with pytest.raises(errors.SandboxStateError):
            await driver.resume(sandbox_id=sid)

        await driver.pause(sandbox_id=sid)
        assert (await driver.info(sandbox_id=sid)).state is PAUSED
        frozen: list[Awaitable[object]] = [driver.pause(sandbox_id=sid), driver.start(sandbox_id=sid, process=SLEEP)]
        for refused_call in frozen:
            with pytest.raises(errors.SandboxStateError):
                await refused_call
        await driver.resume(sandbox_id=sid)
        assert (await driver.info(sandbox_id=sid)).state is RUNNING

        await driver.checkpoint(sandbox_id=sid, image_dir=images / "checkpoint")
        info = await driver.info(sandbox_id=sid)
        assert (info.state, info.init_pid, info.checkpoint) == (PAUSED, 0, images / "checkpoint")
        assert any((images / "checkpoint").iterdir()), "the images are in the directory given"
        with pytest.raises(errors.StreamClosed):
            await sleeper.wait()
        checkpointed: list[Awaitable[object]] = [
            driver.checkpoint(sandbox_id=sid, image_dir=images / "again"),
            driver.fork(sandbox_id=sid, children=[spec()], image_dir=images / "fork"),
            driver.snapshot(sandbox_id=sid, dest=images / "snapshot"),
            driver.start(sandbox_id=sid, process=SLEEP),
            driver.processes(sandbox_id=sid),
        ]
        for refused_call in checkpointed:
            with pytest.raises(errors.SandboxStateError):
                await refused_call
        assert (await driver.restore(sandbox_id=sid)).state is RUNNING
        assert await tags(driver, sid) == ["contract"], "its processes go on"

        [child] = await driver.fork(sandbox_id=sid, children=[spec()], image_dir=images / "fork")
        assert child.state is RUNNING and await tags(driver, child.sandbox_id) == ["contract"]
        await driver.destroy(sandbox_id=child.sandbox_id)
        await driver.snapshot(sandbox_id=sid, dest=images / "snapshot", memory=False)
        copy = await driver.create_from_snapshot(spec=spec(), source=images / "snapshot")
        assert copy.state is RUNNING and await tags(driver, copy.sandbox_id) == []
        await driver.destroy(sandbox_id=copy.sandbox_id)
        assert (await driver.restart(sandbox_id=sid)).state is RUNNING
        assert await tags(driver, sid) == []

        stray = spec()
        await driver.create(spec=stray)
        others = {i.sandbox_id for i in await driver.list()} - {stray.sandbox_id}
        report = await driver.reconcile(known=[*others, "never-existed"])
        assert (stray.sandbox_id in report.removed, sid in report.kept) == (True, True)
        assert report.missing == ("never-existed",)
    finally:
        with contextlib.suppress(errors.SandboxNotFound):
            await driver.destroy(sandbox_id=sid)
    gone_calls: list[Awaitable[object]] = [driver.info(sandbox_id=sid), driver.destroy(sandbox_id=sid)]
    for gone in gone_calls:
        with pytest.raises(errors.SandboxNotFound):
            await gone


async def test_the_fake_driver_keeps_the_contract(tmp_path: Path) -> None:
    runtime = dataclasses.replace(Settings().runtime, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    (runtime.templates_dir / "base" / "current").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    async with FakeDriver(runtime) as driver:
        await keeps_the_contract(driver, tmp_path / "images")


@conftest.needs_criu
async def test_runc_keeps_the_contract(driver: RuncDriver, checkpoint_images: Path) -> None:
    await keeps_the_contract(driver, checkpoint_images)
