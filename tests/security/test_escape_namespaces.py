"""Escapes through namespaces: none can be made or joined from inside a sandbox.

A nested user namespace gives its maker every capability over a fresh set of kernel code, and
each one counts against the host's ``user.max_user_namespaces``: a tenant that could make them
could use them all up and stop every new sandbox on the host.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.runtime.drivers.runc import RuncDriver
from tests import conftest
from tests.runtime.conftest import run
from tests.security.probes import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, USERS, syscalls

_SIGCHLD = 17


@pytest.mark.parametrize("user", USERS)
async def test_no_namespace_can_be_made_or_joined(driver: RuncDriver, sandbox: str, user: str) -> None:
    answers = await syscalls(driver, sandbox, {
        "unshare user": ("unshare", CLONE_NEWUSER),
        "unshare user+net": ("unshare", CLONE_NEWUSER | CLONE_NEWNET),
        "unshare user+mount": ("unshare", CLONE_NEWUSER | CLONE_NEWNS),
        "unshare net": ("unshare", CLONE_NEWNET),
        "unshare mount": ("unshare", CLONE_NEWNS),
        "clone user": ("clone", CLONE_NEWUSER | _SIGCHLD, 0, 0, 0, 0),
        "setns": ("setns", -1, 0),  # a bad fd: EBADF if the call got as far as the kernel
    }, user=user)
    assert answers == dict.fromkeys(answers, "EPERM")
    # The tools say so too.
    tool = await run(driver, sandbox, "unshare", "--user", "--map-root-user", "--net", "true", user=user)
    assert tool.exit.exit_code != 0 and "Operation not permitted" in tool.stderr


@pytest.mark.parametrize("user", USERS)
async def test_clone3_says_enosys_and_fork_and_threads_still_work(driver: RuncDriver, sandbox: str, user: str) -> None:
    # ENOSYS (not EPERM) is what makes glibc fall back from clone3 to clone.
    assert await syscalls(driver, sandbox, {"clone3": ("clone3", [88], 88)}, user=user) == {"clone3": "ENOSYS"}
    # Unsharing what is not a namespace stays allowed (the files table, the fs root).
    assert await syscalls(driver, sandbox, {"unshare files": ("unshare", 0x400)}, user=user) == {"unshare files": "ok"}
    works = await run(driver, sandbox, "python3", "-c", """
import os, subprocess, threading
out = []
t = threading.Thread(target=out.append, args=("thread",))
t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
out.append(f"fork {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}")
out.append(subprocess.run(["sh", "-c", "echo spawn"], capture_output=True, text=True).stdout.strip())
print(*out)
""", user=user)
    assert works.stdout.strip() == "thread fork 7 spawn", works.stderr


@conftest.needs_criu
async def test_the_walls_stand_after_a_restore(driver: RuncDriver, sandbox: str, images: Path) -> None:
    # CRIU puts back the filter the processes had; runc applies none on restore. The sandbox's
    # init (which starts every later process) must still be under it.
    await driver.checkpoint(sandbox_id=sandbox, image_dir=images / "cp")
    await driver.restore(sandbox_id=sandbox)
    for user in USERS:
        answers = await syscalls(driver, sandbox, {
            "unshare user": ("unshare", CLONE_NEWUSER), "clone3": ("clone3", [88], 88),
        }, user=user)
        assert answers == {"unshare user": "EPERM", "clone3": "ENOSYS"}
        after = await run(driver, sandbox, "sh", "-c", "ulimit -H -c; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping",
                          user=user)
        assert after.stdout.split() == ["0", "ping"], after.stderr
