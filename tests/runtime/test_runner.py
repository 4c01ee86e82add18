"""Runner sandboxes (`models.SandboxSpec.runner`): the read-only layout, and `reset`, which must
leave a next run nothing of the last one. Real runc, the real `runner` template."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandlot.runtime import errors, models
from sandlot.runtime.drivers.runc import RuncDriver
from tests.runtime.conftest import SandboxFactory, run

# What a run can leave behind besides files: a daemonised process, System V IPC objects and a
# POSIX message queue (all of which outlive the process that made them).
LEAVE_TRACES = r"""
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
assert libc.shmget(0x5A5A, 4096, 0o1666) >= 0          # IPC_CREAT | 0666
assert libc.semget(0x5B5B, 1, 0o1666) >= 0
assert libc.msgget(0x5C5C, 0o1666) >= 0
rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.restype = ctypes.c_int
assert rt.mq_open(b"/left-behind", os.O_CREAT | os.O_RDWR, 0o600, None) >= 0
subprocess.Popen(["sleep", "1000"], start_new_session=True)
for d in ("/tmp", "/var/tmp", "/dev/shm", os.path.expanduser("~")):
    open(os.path.join(d, "left-behind"), "w").write("secret")
os.makedirs(os.path.expanduser("~/deep/er"))
os.symlink("/etc/passwd", os.path.expanduser("~/link"))
os.chmod(os.path.expanduser("~"), 0o700)
print("left")
"""

LOOK = r"""
import os
procs = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("procs", len(procs))
for kind in ("shm", "sem", "msg"):
    print(kind, len(open(f"/proc/sysvipc/{kind}").readlines()) - 1)
print("mqueue", os.listdir("/dev/mqueue"))
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    print(d, sorted(os.listdir(d)))
home = os.path.expanduser("~")
print("home", sorted(os.listdir(home)), oct(os.stat(home).st_mode & 0o777))
"""


@pytest.fixture
async def runner(make_sandbox: SandboxFactory) -> str:
    return await make_sandbox(template="runner", runner=True, limits=models.Limits(disk_mb=64, pids=64))


async def test_root_is_read_only_and_scratch_is_writable(driver: RuncDriver, runner: str) -> None:
    script = (
        "for d in /etc /usr/lib /opt; do touch $d/x 2>&1 | grep -c 'Read-only' ; done;"
        "for d in /tmp /var/tmp /dev/shm ~; do touch $d/x && echo ok; done;"
        "grep NoNewPrivs /proc/self/status"
    )
    result = await run(driver, runner, "sh", "-c", script)
    assert result.stdout.split("\n")[:7] == ["1", "1", "1", "ok", "ok", "ok", "ok"], result
    assert "NoNewPrivs:\t1" in result.stdout, "no process may gain privileges (no sudo, no setuid)"
    root = await run(driver, runner, "sh", "-c", "touch /etc/x", user="root")
    assert root.exit.exit_code != 0 and "Read-only" in root.stderr, "not even root writes the template"


async def test_scratch_is_the_disk_limit(driver: RuncDriver, runner: str) -> None:
    full = await run(driver, runner, "sh", "-c", "head -c 100M /dev/zero > /tmp/big; echo $?; df -m /tmp | tail -1")
    code, df = full.stdout.splitlines()
    assert code != "0" and "No space left" in full.stderr
    assert df.split()[1] == "64", df


async def test_reset_leaves_nothing_of_the_last_run(driver: RuncDriver, runner: str) -> None:
    clean = await run(driver, runner, "python3", "-c", LOOK)
    left = await run(driver, runner, "python3", "-c", LEAVE_TRACES)
    assert left.stdout == "left\n", left
    dirty = await run(driver, runner, "python3", "-c", LOOK)
    assert dirty.stdout != clean.stdout, "the traces must be visible before the reset"
    assert "shm 1" in dirty.stdout and "['left-behind']" in dirty.stdout

    await driver.reset(sandbox_id=runner)
    after = await run(driver, runner, "python3", "-c", LOOK)
    assert after.stdout == clean.stdout, f"before:\n{clean.stdout}\nafter reset:\n{after.stdout}"
    assert "procs 2" in after.stdout, "init and the looking process only"
    template_home = await run(driver, runner, "sh", "-c", "ls -A ~")
    assert sorted(template_home.stdout.split()) == [".bash_logout", ".bashrc", ".profile"]


async def test_reset_stops_a_fork_bomb(driver: RuncDriver, runner: str) -> None:
    bomb = await driver.start(
        sandbox_id=runner, process=models.ProcessSpec(["bash", "-c", "b() { b | b & }; b; sleep 30"])
    )
    await asyncio.sleep(1.0)
    stats = await driver.stats(sandbox_id=runner)
    assert stats.pids > 32, "the bomb should have filled the pids limit"
    await bomb.aclose()
    await driver.reset(sandbox_id=runner)
    assert (await driver.stats(sandbox_id=runner)).pids == 1
    assert (await run(driver, runner, "echo", "alive")).stdout == "alive\n"


async def test_put_files(driver: RuncDriver, runner: str) -> None:
    await driver.put_files(sandbox_id=runner, files={"main.py": b"print(6 * 7)\n", "pkg/data.txt": b"x" * 10})
    result = await run(driver, runner, "sh", "-c", "python3 main.py; stat -c '%U %a' main.py pkg pkg/data.txt")
    assert result.stdout == "42\nuser 644\nuser 755\nuser 644\n", result
    for bad in ("/etc/passwd", "../x", "a//b", "./a", "a/../../b", ""):
        with pytest.raises(ValueError):
            await driver.put_files(sandbox_id=runner, files={bad: b"x"})
    sleeper = await driver.start(sandbox_id=runner, process=models.ProcessSpec(["sleep", "30"]))
    try:
        with pytest.raises(errors.SandboxStateError, match="running something"):
            await driver.put_files(sandbox_id=runner, files={"late.txt": b"x"})
    finally:
        await sleeper.aclose()
        await driver.reset(sandbox_id=runner)


async def test_limits_change_for_a_run_and_back(driver: RuncDriver, runner: str) -> None:
    grab = "python3 -c 'b = bytearray(150 << 20); print(len(b) >> 20)'"
    assert (await run(driver, runner, "sh", "-c", grab)).stdout == "150\n"
    before = await driver.stats(sandbox_id=runner)
    await driver.update(sandbox_id=runner, limits=models.Limits(memory_mb=64, pids=64, disk_mb=64, cpu_cores=0.5))
    killed = await run(driver, runner, "sh", "-c", grab)
    assert killed.exit.exit_code != 0, "150 MiB must not fit in 64 MiB"
    after = await driver.stats(sandbox_id=runner)
    assert after.memory_limit_bytes == 64 << 20 and after.oom_kills == before.oom_kills + 1
    with pytest.raises(ValueError, match="disk_mb"):
        await driver.update(sandbox_id=runner, limits=models.Limits(disk_mb=128))
    await driver.update(sandbox_id=runner, limits=models.Limits(memory_mb=512, pids=64, disk_mb=64))
    await driver.reset(sandbox_id=runner)
    assert (await run(driver, runner, "sh", "-c", grab)).stdout == "150\n"
    assert (await driver.stats(sandbox_id=runner)).memory_peak_bytes > 150 << 20
    await driver.reset(sandbox_id=runner)
    assert (await driver.stats(sandbox_id=runner)).memory_peak_bytes < 50 << 20, "reset starts the peak over"


async def test_a_runner_cannot_be_checkpointed_or_forked(driver: RuncDriver, runner: str, tmp_path: Path) -> None:
    with pytest.raises(errors.SandboxStateError, match="runner"):
        await driver.checkpoint(sandbox_id=runner, image_dir=tmp_path / "images")
    with pytest.raises(errors.SandboxStateError, match="runner"):
        await driver.fork(sandbox_id=runner, children=[models.SandboxSpec(sandbox_id="copy")], image_dir=tmp_path / "f")
    assert not (tmp_path / "images").exists()


async def test_reset_is_refused_for_a_regular_sandbox(driver: RuncDriver, sandbox: str) -> None:
    with pytest.raises(errors.SandboxStateError, match="not a runner"):
        await driver.reset(sandbox_id=sandbox)
