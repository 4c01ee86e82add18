"""What a sandbox must not be able to do to the host, to other sandboxes, or to the runtime.

The network walls, the bombs and the escapes through system calls are in ``tests/security``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sandlot.runtime.drivers.runc import RuncDriver
from tests.runtime.conftest import SandboxFactory, run


async def test_host_processes_are_invisible(driver: RuncDriver, sandbox: str) -> None:
    ps = await run(driver, sandbox, "ps", "-eo", "pid,comm", "--no-headers")
    names = [line.split()[1] for line in ps.stdout.strip().splitlines()]
    assert names[0] == "init"
    assert "pytest" not in ps.stdout and "python" not in " ".join(names[:-1])
    assert len(names) <= 3, f"the sandbox sees processes that are not its own: {names}"
    pid1 = await run(driver, sandbox, "cat", "/proc/1/cmdline")
    assert pid1.stdout.startswith("/.sandlot/init")


async def test_host_files_are_out_of_reach(driver: RuncDriver, sandbox: str, tmp_path: Path) -> None:
    secret = tmp_path / f"secret-{uuid.uuid4().hex}"
    secret.write_text("host secret")
    for user in ("user", "root"):
        result = await run(driver, sandbox, "sh", "-c", f"cat {secret} /proc/1/root{secret} 2>&1; ls {tmp_path} 2>&1",
                           user=user)
        assert "host secret" not in result.stdout
        assert "No such file" in result.stdout


async def test_root_inside_is_not_root_outside(driver: RuncDriver, sandbox: str) -> None:
    uid_map = await run(driver, sandbox, "cat", "/proc/self/uid_map", user="root")
    inside, outside, _ = uid_map.stdout.split()
    assert (inside, outside) == ("0", str(driver.settings.userns_base))
    # Kernel-wide knobs stay shut to root inside: sysrq, kernel parameters, modules, /sys.
    finit_module = (  # finit_module(2), syscall 313, of no module at all
        'import ctypes,os; r=ctypes.CDLL(None,use_errno=True).syscall(313,0,b"",0); '
        'print("finit_module", os.strerror(ctypes.get_errno()))'
    )
    attempts = await run(driver, sandbox, "sh", "-c", f"""
        echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-open
        echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo proc-sys-open
        echo 1 > /sys/kernel/profiling 2>/dev/null && echo sysfs-open
        mount -t tmpfs none /mnt 2>/dev/null && echo mount-open
        python3 -c '{finit_module}'
        echo done""", user="root")
    assert "open" not in attempts.stdout
    assert "finit_module Operation not permitted" in attempts.stdout
    assert attempts.stdout.strip().endswith("done")


async def test_planted_symlinks_do_not_reach_the_host(
    driver: RuncDriver, make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("host data")
    sid = await make_sandbox()
    # Root in the sandbox replaces files and directories the runtime knows with links to
    # host paths: the etc files it wrote at create, the init's directory, whole trees.
    await run(driver, sid, "sh", "-c", f"""
        ln -sf {canary}/keep /etc/hosts; ln -sf {canary}/keep /etc/resolv.conf
        ln -s {canary} /home/user/hostdir; ln -s / /home/user/hostroot
        mkdir -p /tmp/deep/a/b && ln -s {canary} /tmp/deep/a/b/c
        ln -s {canary}/keep /tmp/hardish""", user="root")
    await driver.stats(sandbox_id=sid)
    await driver.destroy(sandbox_id=sid)
    assert (canary / "keep").read_text() == "host data"
    assert sorted(os.listdir(canary)) == ["keep"]
