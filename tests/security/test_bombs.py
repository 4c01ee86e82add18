"""Bombs: a sandbox that exhausts its processes, memory, disk or inodes hurts only itself.

Each bomb goes off in one sandbox while a neighbour works; the neighbour must finish its work
in good time, the bombed sandbox must live on, and the host must still make sandboxes.
"""

from __future__ import annotations

import asyncio
import os

from sandlot.runtime import models
from sandlot.runtime.drivers.runc import RuncDriver
from tests.runtime.conftest import Result, SandboxFactory, run

_WORK = ("python3", "-c", "print(sum(range(10**6)))")


async def _go_off(driver: RuncDriver, make_sandbox: SandboxFactory, limits: models.Limits, bomb: str) -> Result:
    """Run the Python program ``bomb`` in a sandbox with ``limits`` beside a neighbour, check
    that the neighbour, the bombed sandbox and the host all still work, and return what the
    bomb printed."""
    target, neighbour = await make_sandbox(limits=limits), await make_sandbox()
    going = asyncio.ensure_future(run(driver, target, "python3", "-c", bomb))
    try:
        await asyncio.sleep(0.2)
        work = await asyncio.wait_for(run(driver, neighbour, *_WORK), 20)
        assert work.stdout == "499999500000\n"
        result = await asyncio.wait_for(going, 120)
    finally:
        going.cancel()
    assert (await run(driver, target, "echo", "alive")).stdout == "alive\n"
    assert (await driver.info(sandbox_id=target)).state is models.SandboxState.RUNNING
    assert (await run(driver, await make_sandbox(), "echo", "alive")).stdout == "alive\n"
    return result


async def test_memory_bomb_is_killed_inside_only(driver: RuncDriver, make_sandbox: SandboxFactory) -> None:
    bomb = await _go_off(driver, make_sandbox, models.Limits(memory_mb=64), """
chunks = []
while True:
    chunks.append(bytearray(16 * 2**20))
    print(len(chunks), flush=True)
""")
    assert bomb.exit.signal == 9
    assert int(bomb.stdout.split()[-1]) * 16 <= 64


async def test_fork_bomb_hits_the_pids_limit(driver: RuncDriver, make_sandbox: SandboxFactory) -> None:
    bomb = await _go_off(driver, make_sandbox, models.Limits(pids=64), """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print("stopped", n, e.errno, flush=True)
    os.killpg(0, 9)
""")
    words = bomb.stdout.split()
    assert words[0] == "stopped" and int(words[2]) == 11, bomb.stdout  # EAGAIN
    assert int(words[1]) < 64


async def test_disk_bomb_gives_enospc(driver: RuncDriver, make_sandbox: SandboxFactory) -> None:
    host_before = os.statvfs(driver.settings.data_dir)
    bomb = await _go_off(driver, make_sandbox, models.Limits(disk_mb=64), """
import errno
try:
    with open('/home/user/fill', 'wb') as f:
        for _ in range(200):
            f.write(b'x' * 2**20)
            f.flush()
    print('wrote everything')
except OSError as e:
    print('errno', errno.errorcode[e.errno])
""")
    assert bomb.stdout.strip() == "errno ENOSPC"
    host_after = os.statvfs(driver.settings.data_dir)
    assert (host_before.f_bavail - host_after.f_bavail) * host_after.f_frsize < 128 * 2**20


async def test_inode_bomb_gives_enospc(driver: RuncDriver, make_sandbox: SandboxFactory) -> None:
    host_before = os.statvfs(driver.settings.data_dir)
    bomb = await _go_off(driver, make_sandbox, models.Limits(disk_mb=64), """
import errno, os
os.mkdir('/home/user/many')
n = 0
try:
    while True:
        open(f'/home/user/many/{n}', 'x').close()
        n += 1
except OSError as e:
    print(n, errno.errorcode[e.errno])
""")
    made, error = bomb.stdout.split()
    assert error == "ENOSPC" and 1000 < int(made) < 10000, bomb.stdout
    host_after = os.statvfs(driver.settings.data_dir)
    assert host_before.f_favail - host_after.f_favail < 1000, "the sandbox's files took the host's inodes"
