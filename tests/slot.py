"""This test run's share of the host's private address space.

Every driver a test run starts needs subnets no other run on the machine is using at the same
time, or two runs' veths would claim the same addresses. A run takes the first free slot
(0-9) by holding an exclusive lock on ``/run/lock/sandlot-test-slot-N`` for as long as the
process lives, and derives every subnet it uses from that number.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["SLOT", "subnet"]

SLOTS = 10


def _acquire() -> tuple[int, int]:
    for n in range(SLOTS):
        fd = os.open(f"/run/lock/sandlot-test-slot-{n}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return n, fd
    raise RuntimeError(f"all {SLOTS} test slots are taken: {SLOTS} test runs are going on at once")


SLOT, _fd = _acquire()


def subnet(second_octet: int, half: int = 0) -> str:
    """A /17 of ``10.<second_octet + SLOT>.0.0/16``: the lower half, or the upper one."""
    return f"10.{second_octet + SLOT}.{128 * half}.0/17"
