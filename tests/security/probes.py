"""System calls made from inside a sandbox, and what each one answered.

python3 is in every template, gcc is not: a probe is a Python program that makes each raw call
through ctypes' ``syscall()`` in a child of its own (so that a call that works, such as an
``unshare``, cannot change the next one) and prints ``ok`` or the errno's name per call.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from typing import Any

from sandlot.runtime.drivers.runc import RuncDriver
from tests.runtime.conftest import run

__all__ = ["CLONE_NEWNET", "CLONE_NEWNS", "CLONE_NEWUSER", "NR", "USERS", "syscalls"]

USERS = ("user", "root")
"""Every escape is tried by both: the issue found each one open to both."""

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x10000000, 0x40000000

_TABLES = {
    "x86_64": {"clone": 56, "ptrace": 101, "add_key": 248, "keyctl": 250, "unshare": 272,
               "perf_event_open": 298, "setns": 308, "bpf": 321, "userfaultfd": 323},
    "aarch64": {"clone": 220, "ptrace": 117, "add_key": 217, "keyctl": 219, "unshare": 97,
                "perf_event_open": 241, "setns": 268, "bpf": 280, "userfaultfd": 282},
}
NR = {
    **_TABLES[platform.machine()],
    # One table for every arch from Linux 5.1 on.
    "io_uring_setup": 425, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435, "mount_setattr": 442,
}
"""System call numbers of this machine (a sandbox runs the host's arch)."""

_PROBE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def arg(a):
    if isinstance(a, str):
        return ctypes.c_char_p(a.encode())
    if isinstance(a, list):  # [n]: a zeroed buffer of n bytes
        return ctypes.create_string_buffer(a[0])
    return ctypes.c_long(a)
calls, first = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for name, nr, *args in calls:
    pid = os.fork()
    if pid == 0:
        if first:
            libc.syscall(*map(arg, first))
        r = libc.syscall(nr, *map(arg, args))
        os._exit(0 if r >= 0 else ctypes.get_errno())
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out[name] = "ok" if code == 0 else errno.errorcode.get(code, str(code))
print(json.dumps(out))
"""

async def syscalls(
    driver: RuncDriver,
    sandbox_id: str,
    calls: dict[str, Sequence[Any]],
    *,
    user: str,
    first: Sequence[Any] = (),
) -> dict[str, str]:
    """Make each call (a label, then the name of the system call and its arguments; a string
    is passed as a C string, ``[n]`` as a zeroed n-byte buffer) and return what each answered:
    ``ok`` or an errno name such as ``EPERM``. ``first`` is a call made before each one, in
    the same child: the first step of an attack, whose own answer does not matter."""
    table = [[label, NR[name], *args] for label, (name, *args) in calls.items()]
    prelude = [NR[first[0]], *first[1:]] if first else []
    result = await run(driver, sandbox_id, "python3", "-c", _PROBE, json.dumps(table), json.dumps(prelude), user=user)
    assert result.exit.exit_code == 0, result.stderr
    return json.loads(result.stdout)
