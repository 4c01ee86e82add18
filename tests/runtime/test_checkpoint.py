"""Checkpoint, restore and fork with real CRIU (built by scripts/build-criu) and real runc."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot.runtime import cgroups, errors, models
from sandlot.runtime.drivers.runc import RuncDriver
from tests import conftest
from tests.runtime.conftest import SandboxFactory, cgroup2_mount, run

pytestmark = conftest.needs_criu

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


async def test_snapshot_copies_memory_and_files_into_new_sandboxes(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path
) -> None:
    source = await make_sandbox()
    counter = await driver.start(
        sandbox_id=source, process=models.ProcessSpec(["python3", "-c", COUNTER], tag="counter")
    )
    await counter.aclose()
    await run(driver, source, "sh", "-c", "echo snap > /home/user/snap.txt")
    source_address = (await driver.info(sandbox_id=source)).address
    before = await _count(source_address)
    memory, files = images / "memory", images / "files"
    await driver.snapshot(sandbox_id=source, dest=memory)
    await driver.snapshot(sandbox_id=source, dest=files, memory=False)
    assert sorted(p.name for p in memory.iterdir()) == ["disk.img", "memory", "runtime.json"]
    assert sorted(p.name for p in files.iterdir()) == ["disk.img", "runtime.json"]
    assert (memory / "runtime.json").stat().st_mode & 0o777 == 0o600
    # The source goes on, and what it does now is not in the snapshot.
    assert await _count(source_address) >= before
    await run(driver, source, "sh", "-c", "echo later > /home/user/snap.txt")
    ids = [f"{source}-m", f"{source}-f"]
    try:
        warm = await driver.create_from_snapshot(
            spec=models.SandboxSpec(sandbox_id=ids[0], network=models.NetworkPolicy(internet=False)), source=memory
        )
        cold = await driver.create_from_snapshot(
            spec=models.SandboxSpec(sandbox_id=ids[1], network=models.NetworkPolicy(internet=False)), source=files
        )
        assert warm.state is cold.state is models.SandboxState.RUNNING
        assert len({warm.address, cold.address, source_address}) == 3
        assert await _count(warm.address) >= before, "the memory copy's counter goes on"
        assert [p.tag for p in await driver.processes(sandbox_id=ids[0])] == ["counter"]
        assert await driver.processes(sandbox_id=ids[1]) == [], "the filesystem copy boots clean"
        for sid in ids:
            assert (await run(driver, sid, "cat", "/home/user/snap.txt")).stdout == "snap\n"
            assert (await run(driver, sid, "hostname")).stdout == f"{source}\n", "the source's hostname"
        # The snapshot is not needed by what was made from it.
        shutil.rmtree(memory)
        shutil.rmtree(files)
        assert await _count(warm.address) >= before
        assert (await run(driver, ids[1], "cat", "/home/user/snap.txt")).stdout == "snap\n"
    finally:
        for sid in ids:
            if sid in {i.sandbox_id for i in await driver.list()}:
                await driver.destroy(sandbox_id=sid)


async def test_a_failed_snapshot_leaves_nothing(driver: RuncDriver, make_sandbox: SandboxFactory, images: Path) -> None:
    sid = await make_sandbox()
    await driver.checkpoint(sandbox_id=sid, image_dir=images / "cp")
    with pytest.raises(errors.SandboxStateError):
        await driver.snapshot(sandbox_id=sid, dest=images / "snap")
    assert not (images / "snap").exists()
    await driver.restore(sandbox_id=sid)
    with pytest.raises(errors.RuntimeDriverError):
        await driver.create_from_snapshot(spec=models.SandboxSpec(sandbox_id=f"{sid}-x"), source=images / "missing")
    assert f"{sid}-x" not in {i.sandbox_id for i in await driver.list()}
    assert not (driver.settings.data_dir / "sandboxes" / f"{sid}-x").exists()


@pytest.mark.parametrize("checkpointed", [False, True], ids=["running", "checkpointed"])
async def test_restart_boots_clean_on_the_same_files(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path, checkpointed: bool
) -> None:
    sid = await make_sandbox()
    sleeper = await driver.start(sandbox_id=sid, process=models.ProcessSpec(["sleep", "1000"], tag="sleeper"))
    await sleeper.aclose()
    await run(driver, sid, "sh", "-c", "echo kept > /home/user/kept.txt")
    before = await driver.info(sandbox_id=sid)
    if checkpointed:
        await driver.checkpoint(sandbox_id=sid, image_dir=images / "cp")
    after = await driver.restart(sandbox_id=sid)
    assert after.state is models.SandboxState.RUNNING
    assert after.address == before.address, "the same network slot"
    assert after.init_pid != before.init_pid
    assert await driver.processes(sandbox_id=sid) == [], "every process ended"
    assert (await run(driver, sid, "cat", "/home/user/kept.txt")).stdout == "kept\n"
    assert (await run(driver, sid, "hostname")).stdout == f"{sid}\n"
    # Twice in a row works too, and the sandbox is destroyed whole afterwards.
    await driver.restart(sandbox_id=sid)
    assert (await run(driver, sid, "cat", "/home/user/kept.txt")).stdout == "kept\n"


async def test_restart_takes_the_templates_current_build(driver: RuncDriver, make_sandbox: SandboxFactory) -> None:
    """A template with two builds (both the base template's files): after ``current`` moves
    to the second, a restart mounts that one below the sandbox's own files."""
    base = (driver.settings.templates_dir / "base" / "current").resolve()
    name = f"restart-test-{os.getpid()}"
    tdir = driver.settings.templates_dir / name
    try:
        for build in ("b1", "b2"):
            (tdir / build).mkdir(parents=True)
            (tdir / build / "rootfs").symlink_to(base / "rootfs")
            shutil.copy(base / "template.json", tdir / build / "template.json")
        (tdir / "current").symlink_to("b1")
        sid = await make_sandbox(template=name)
        await run(driver, sid, "sh", "-c", "echo kept > /home/user/kept.txt")
        assert f"{tdir}/b1/rootfs" in _lowerdir(driver, sid)
        (tdir / "next").symlink_to("b2")
        os.replace(tdir / "next", tdir / "current")
        await driver.restart(sandbox_id=sid)
        assert f"{tdir}/b2/rootfs" in _lowerdir(driver, sid)
        assert (await run(driver, sid, "cat", "/home/user/kept.txt")).stdout == "kept\n"
        # With no current build left, a restart refuses and leaves the sandbox as it was.
        (tdir / "current").unlink()
        with pytest.raises(errors.TemplateNotFound):
            await driver.restart(sandbox_id=sid)
        assert (await run(driver, sid, "cat", "/home/user/kept.txt")).stdout == "kept\n"
    finally:
        shutil.rmtree(tdir, ignore_errors=True)


def _lowerdir(driver: RuncDriver, sandbox_id: str) -> str:
    root = str(driver.settings.data_dir / "sandboxes" / sandbox_id / "bundle" / "rootfs")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == root:
                return fields[-1]
    raise AssertionError(f"{root} is not mounted")


async def test_criu_build_caches_probes_and_skips_empty_tmpfs(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path
) -> None:
    """What scripts/build-criu's recipe buys: CRIU's kerndat cache lives on the tmpfs the
    driver keeps mounted (no stale criu.kdat.tmp blocks it), the empty tmpfs mounts of a
    sandbox (runc's masked directories) are dumped as empty images with no tar run, and the
    others as plain tar, which a restore reads back."""
    rundir = driver.settings.cache_dir / "criu" / "run"
    sid = await make_sandbox()
    await driver.checkpoint(sandbox_id=sid, image_dir=images / "cp")
    assert os.path.ismount(rundir)
    assert (rundir / "criu.kdat").stat().st_size > 0 and not (rundir / "criu.kdat.tmp").exists()
    tmpfs = sorted((images / "cp").glob("tmpfs-dev-*.img"))
    empty = [p for p in tmpfs if p.stat().st_size == 0]
    assert len(empty) >= 3, f"the masked directories' tmpfs images: {[(p.name, p.stat().st_size) for p in tmpfs]}"
    assert all(p.read_bytes()[:2] != b"\x1f\x8b" for p in tmpfs), "no gzip"
    await driver.restore(sandbox_id=sid)
    assert (await run(driver, sid, "ls", "/dev/null", "/dev/shm")).exit.ok


async def test_criu_leaves_the_hosts_cgroup_mounts_alone(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path
) -> None:
    """Left to itself, CRIU mounts every cgroup hierarchy afresh for each dump and restore,
    and its plain cgroup2 mount takes the driver's ``favordynmods`` off the host's (it is
    the same superblock), after which every cgroup move waits for a grace period again. The
    driver hands CRIU a yard of the host's own mounts instead, through the bundle's CRIU
    config: the host's options are the same after a pause, a resume and a fork."""
    sid = await make_sandbox()
    before = cgroup2_mount()
    assert "favordynmods" in before[2].split(","), "the driver turned it on when it opened"
    await driver.checkpoint(sandbox_id=sid, image_dir=images / "cp")
    await driver.restore(sandbox_id=sid)
    [child] = await driver.fork(
        sandbox_id=sid, children=[models.SandboxSpec(sandbox_id=f"{sid}-f")], image_dir=images / "f"
    )
    try:
        assert cgroup2_mount() == before
        assert (await run(driver, child.sandbox_id, "true")).exit.ok
    finally:
        await driver.destroy(sandbox_id=child.sandbox_id)


def _limit_files(driver: RuncDriver, sandbox_id: str) -> dict[str, str]:
    names = {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "cpu.cfs_quota_us", "pids.max",
             "devices.list", "memory.max", "memory.swap.max", "cpu.max"}
    return {
        f"{d.parent.name}/{f.name}": f.read_text()
        for d in cgroups.cgroup_dirs(f"/sandlot-{driver.settings.instance}/{sandbox_id}")
        for f in d.iterdir()
        if f.name in names
    }


async def test_a_resume_keeps_the_limits_the_sandbox_had(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path
) -> None:
    """A sandbox resumed from its own checkpoint is restored by CRIU alone, which makes its
    cgroup from the images rather than from config.json: the limits changed while it ran
    and the device rules are the ones it had, and it is not left frozen."""
    sid = await make_sandbox()
    await driver.update(sandbox_id=sid, limits=models.Limits(memory_mb=300, cpu_cores=0.5, pids=100))
    before = _limit_files(driver, sid)
    assert any("300" in v or str(300 * 2**20) in v for v in before.values()), before
    for i in range(2):
        await driver.checkpoint(sandbox_id=sid, image_dir=images / f"cp{i}")
        await driver.restore(sandbox_id=sid)
        assert _limit_files(driver, sid) == before
        assert (await run(driver, sid, "true")).exit.ok


async def test_a_restore_past_its_deadline_fails_and_the_sandbox_stays_paused(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path
) -> None:
    """CRIU killed at its deadline, at whatever step it had reached, fails the resume cleanly:
    still paused, nothing half-restored left (`no_leaks`), resumable later."""
    sid = await make_sandbox()
    counter = await driver.start(sandbox_id=sid, process=models.ProcessSpec(["python3", "-c", COUNTER]))
    await counter.aclose()
    address = (await driver.info(sandbox_id=sid)).address
    settings, killed = driver.settings, 0
    for n, deadline in enumerate([0.001, 0.01, 0.02, 0.03, 0.04]):
        before = await _count(address)
        await driver.checkpoint(sandbox_id=sid, image_dir=images / f"cp{n}")
        driver.settings = dataclasses.replace(settings, criu_timeout=deadline)
        try:
            await driver.restore(sandbox_id=sid)
        except errors.RuntimeDriverError as exc:
            assert "was killed" in str(exc)
            assert (await driver.info(sandbox_id=sid)).state is models.SandboxState.PAUSED
            killed += 1
            driver.settings = settings
            assert (await driver.restore(sandbox_id=sid)).state is models.SandboxState.RUNNING
        finally:
            driver.settings = settings
        assert before <= await _count(address) < before + 60
    assert killed >= 1


async def test_a_refused_restore_can_be_retried_with_connections_open(
    driver: RuncDriver, make_sandbox: SandboxFactory, images: Path
) -> None:
    """A checkpoint taken while a client holds a TCP connection into the sandbox, refused once
    (its manifest missing), restores on the next try: the retry gets the sandbox's address
    back before CRIU reconnects the socket."""
    sid = await make_sandbox()
    counter = await driver.start(sandbox_id=sid, process=models.ProcessSpec(["python3", "-c", COUNTER]))
    await counter.aclose()
    address = (await driver.info(sandbox_id=sid)).address
    before = await _count(address)
    _, held = await asyncio.open_connection(address, 8080)  # established, its request never sent
    try:
        await driver.checkpoint(sandbox_id=sid, image_dir=images / "cp")
        manifest = images / "cp" / "manifest.json"
        kept = manifest.read_bytes()
        manifest.unlink()
        with pytest.raises(errors.RuntimeDriverError, match="no readable manifest"):
            await driver.restore(sandbox_id=sid)
        assert (await driver.info(sandbox_id=sid)).state is models.SandboxState.PAUSED
        manifest.write_bytes(kept)
        assert (await driver.restore(sandbox_id=sid)).state is models.SandboxState.RUNNING
        assert before <= await _count(address) < before + 60
    finally:
        held.close()
