"""Checkpoint, restore and fork with real CRIU (built by scripts/build-criu) and real runc."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot.runtime import errors, models
from sandlot.runtime.drivers.runc import RuncDriver

from tests.runtime.conftest import SandboxFactory, run

pytestmark = pytest.mark.skipif(
    not (Path(os.environ.get("SANDLOT_CACHE_DIR", "/var/cache/sandlot")) / "criu" / "current" / "criu").exists(),
    reason="CRIU is not built (scripts/setup builds it)",
)

# A counter that lives only in memory, served over HTTP, plus a file written before pause.
COUNTER = """
import http.server, threading, time
count = 0
def tick():
    global count
    while True:
        count += 1
        time.sleep(0.01)
threading.Thread(target=tick, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


@pytest.fixture
def images(data_root: Path, driver: RuncDriver) -> Iterator[Path]:
    """Where checkpoints go: like the snapshot store, a directory root inside the sandbox's
    user namespace can reach (not under pytest's mode-0700 temporary directory)."""
    path = data_root / f"images-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o710)
    os.chown(path, 0, driver.settings.userns_base)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _count(address: str) -> int:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(50):
            try:
                return int((await client.get(f"http://{address}:8080/")).text)
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError("the counter never answered")


async def test_state_survives_three_checkpoints(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path
) -> None:
    sid = await make_sandbox()
    counter = await driver.start(sandbox_id=sid, process=models.ProcessSpec(["python3", "-c", COUNTER], tag="counter"))
    await counter.aclose()  # it runs on without anyone attached
    await run(driver, sid, "sh", "-c", "echo kept > /home/user/before.txt")
    address = (await driver.info(sandbox_id=sid)).address
    last = await _count(address)
    for i in range(3):
        await driver.checkpoint(sandbox_id=sid, image_dir=images / f"cp{i}")
        info = await driver.info(sandbox_id=sid)
        assert info.state is models.SandboxState.PAUSED
        assert info.init_pid == 0, "a checkpointed sandbox keeps no process"
        with pytest.raises(errors.SandboxStateError):
            await driver.start(sandbox_id=sid, process=models.ProcessSpec(["true"]))
        await asyncio.sleep(0.3)
        restored = await driver.restore(sandbox_id=sid)
        assert restored.state is models.SandboxState.RUNNING
        assert restored.address == address
        now = await _count(address)
        # It goes on from where it was: not from zero, and not counting the paused time.
        assert last <= now < last + 60, (i, last, now)
        last = await _count(address)
    assert (await run(driver, sid, "cat", "/home/user/before.txt")).stdout == "kept\n"
    assert [p.tag for p in await driver.processes(sandbox_id=sid)] == ["counter"]


async def test_output_goes_on_after_restore(driver: RuncDriver, make_sandbox: SandboxFactory, images: Path) -> None:
    sid = await make_sandbox()
    printer = await driver.start(
        sandbox_id=sid,
        process=models.ProcessSpec(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"]),
    )
    await asyncio.sleep(0.3)
    await driver.checkpoint(sandbox_id=sid, image_dir=images / "cp")
    # The stream the host held ends with the checkpoint...
    async for _ in printer.output():
        pass
    await printer.aclose()
    await driver.restore(sandbox_id=sid)
    # ...and a new one picks the same process up, still printing, still counting.
    again = await driver.attach(sandbox_id=sid, pid=printer.pid)
    stream = again.output()
    numbers = []
    while len(numbers) < 3:
        _, chunk = await asyncio.wait_for(anext(stream), 5)
        numbers += [int(n) for n in chunk.split()]
    await stream.aclose()
    assert numbers[0] > 3
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    await again.signal(9)
    await again.aclose()


async def test_fork_makes_independent_copies(driver: RuncDriver, make_sandbox: SandboxFactory, images: Path) -> None:
    parent = await make_sandbox()
    counter = await driver.start(sandbox_id=parent, process=models.ProcessSpec(["python3", "-c", COUNTER]))
    await counter.aclose()
    await run(driver, parent, "sh", "-c", "echo from-parent > /home/user/shared.txt")
    parent_address = (await driver.info(sandbox_id=parent)).address
    before = await _count(parent_address)
    ids = [f"{parent}-f{i}" for i in range(2)]
    children = await driver.fork(
        sandbox_id=parent,
        children=[models.SandboxSpec(sandbox_id=i, network=models.NetworkPolicy(internet=False)) for i in ids],
        image_dir=images / "fork",
    )
    try:
        assert [c.state for c in children] == [models.SandboxState.RUNNING] * 2
        addresses = {c.address for c in children}
        assert len(addresses) == 2 and parent_address not in addresses
        # Each copy starts from the parent's memory and files...
        for child in children:
            assert await _count(child.address) >= before
            assert (await run(driver, child.sandbox_id, "cat", "/home/user/shared.txt")).stdout == "from-parent\n"
        # ...and from then on lives its own life.
        for i, sid in enumerate(ids):
            await run(driver, sid, "sh", "-c", f"echo child-{i} > /home/user/shared.txt")
        for i, sid in enumerate(ids):
            assert (await run(driver, sid, "cat", "/home/user/shared.txt")).stdout == f"child-{i}\n"
        assert (await run(driver, parent, "cat", "/home/user/shared.txt")).stdout == "from-parent\n"
        await driver.destroy(sandbox_id=ids[0])
        assert await _count(children[1].address) > before
        assert await _count(parent_address) > before
    finally:
        for sid in ids:
            if sid in {i.sandbox_id for i in await driver.list()}:
                await driver.destroy(sandbox_id=sid)


async def test_images_must_sit_in_a_private_directory(
    driver: RuncDriver, make_sandbox: SandboxFactory, data_root: Path
) -> None:
    sid = await make_sandbox()
    open_dir = data_root / f"open-{uuid.uuid4().hex[:8]}"
    open_dir.mkdir(mode=0o755)
    try:
        with pytest.raises(errors.RuntimeDriverError, match="mode 0710"):
            await driver.checkpoint(sandbox_id=sid, image_dir=open_dir / "cp")
        assert not (open_dir / "cp").exists()
        assert (await driver.info(sandbox_id=sid)).state is models.SandboxState.RUNNING
    finally:
        shutil.rmtree(open_dir)
