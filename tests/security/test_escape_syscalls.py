"""Escapes through the kernel's soft spots: system calls a sandbox never needs are refused.

Each call is made with arguments the kernel would act on (or fail on for another reason, such
as a bad fd) if it got that far, so EPERM here is the filter's answer.
"""

from __future__ import annotations

import platform
import signal

import pytest

from sandlot.runtime.drivers.runc import RuncDriver
from tests.runtime.conftest import run
from tests.security.probes import CLONE_NEWNS, CLONE_NEWUSER, USERS, syscalls

_AT_FDCWD = -100
_IO_URING_PARAMS = 120
"""sizeof(struct io_uring_params)."""


@pytest.mark.parametrize("user", USERS)
async def test_the_mount_api_is_refused_even_after_a_nested_user_namespace(
    driver: RuncDriver, sandbox: str, user: str
) -> None:
    # The attack: a user namespace of one's own (where one holds CAP_SYS_ADMIN), then the
    # new mount API. Each call is tried after that unshare, whether the unshare worked or not.
    answers = await syscalls(driver, sandbox, {
        "fsopen": ("fsopen", "tmpfs", 0),
        "fspick": ("fspick", _AT_FDCWD, "/", 0),
        "open_tree": ("open_tree", _AT_FDCWD, "/", 0),
        "open_tree clone": ("open_tree", _AT_FDCWD, "/tmp", 1),
        "move_mount": ("move_mount", -1, "", _AT_FDCWD, "/mnt", 4),
        "fsconfig": ("fsconfig", -1, 6, 0, 0, 0),
        "fsmount": ("fsmount", -1, 0, 0),
        "mount_setattr": ("mount_setattr", -1, "", 0, 0, 0),
    }, user=user, first=("unshare", CLONE_NEWUSER | CLONE_NEWNS))
    assert answers == dict.fromkeys(answers, "EPERM")


@pytest.mark.parametrize("user", USERS)
async def test_kernel_soft_spots_are_refused(driver: RuncDriver, sandbox: str, user: str) -> None:
    answers = await syscalls(driver, sandbox, {
        "io_uring_setup": ("io_uring_setup", 4, [_IO_URING_PARAMS]),
        "userfaultfd": ("userfaultfd", 0x80001),  # O_CLOEXEC | UFFD_USER_MODE_ONLY
        "bpf": ("bpf", 0xFFFF, 0, 0),
        "perf_event_open": ("perf_event_open", 0, 0, -1, -1, 0),
        "keyctl": ("keyctl", 0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
        "add_key": ("add_key", "user", "k", "v", 1, -3),
    }, user=user)
    assert answers == dict.fromkeys(answers, "EPERM")


@pytest.mark.parametrize("user", USERS)
async def test_ptrace_stays_for_debuggers(driver: RuncDriver, sandbox: str, user: str) -> None:
    # As in Docker: since Linux 4.8 a traced process cannot get round its seccomp filter.
    assert await syscalls(driver, sandbox, {"traceme": ("ptrace", 0, 0, 0, 0)}, user=user) == {"traceme": "ok"}


_I386_GETPID = """
import ctypes, mmap, os
code = b"\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3"  # mov eax, 20 (getpid in the i386 table); int 0x80; ret
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
getpid32 = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
print("answered", getpid32() == os.getpid(), flush=True)
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="an i386 system call from x86_64 code")
async def test_the_32_bit_system_call_abi_is_closed(driver: RuncDriver, sandbox: str) -> None:
    # The compat entry is a second way into the kernel: a 32-bit call kills its caller.
    call = await run(driver, sandbox, "python3", "-c", _I386_GETPID)
    assert call.exit.signal == signal.SIGSYS and "answered" not in call.stdout, call
