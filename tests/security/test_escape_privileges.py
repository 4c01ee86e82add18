"""Privileges a sandbox's processes do not get: raw sockets, core dumps, devices, kernel knobs."""

from __future__ import annotations

import pytest

from sandlot.runtime.drivers.runc import RuncDriver
from tests.runtime.conftest import run
from tests.security.probes import USERS

_SOCKETS = """
import socket
for name, family, kind, proto in [("raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                  ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0),
                                  ("icmp datagram", socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)]:
    try:
        socket.socket(family, kind, proto).close()
        print(name, "ok")
    except OSError as e:
        print(name, type(e).__name__)
"""


@pytest.mark.parametrize("user", USERS)
async def test_no_raw_sockets_but_ping_works(driver: RuncDriver, sandbox: str, user: str) -> None:
    sockets = await run(driver, sandbox, "python3", "-c", _SOCKETS, user=user)
    assert sockets.stdout.splitlines() == ["raw PermissionError", "packet PermissionError", "icmp datagram ok"]
    status = await run(driver, sandbox, "grep", "CapBnd", "/proc/self/status", user=user)
    assert not int(status.stdout.split()[1], 16) & (1 << 13), "CAP_NET_RAW is in the bounding set"
    # ping falls back to an ICMP datagram socket (net.ipv4.ping_group_range).
    ping = await run(driver, sandbox, "ping", "-c1", "-W2", "127.0.0.1", user=user)
    assert ping.exit.exit_code == 0, ping.stdout + ping.stderr
    assert "1 received" in ping.stdout


@pytest.mark.parametrize("user", USERS)
async def test_no_core_dumps(driver: RuncDriver, sandbox: str, user: str) -> None:
    limits = await run(driver, sandbox, "sh", "-c",
                       "ulimit -c; ulimit -H -c; ulimit -H -c unlimited 2>&1 || echo refused", user=user)
    lines = limits.stdout.splitlines()
    assert lines[:2] == ["0", "0"]
    assert lines[-1] == "refused"


async def test_devices_do_not_open(driver: RuncDriver, sandbox: str) -> None:
    mounts = await run(driver, sandbox, "cat", "/proc/self/mountinfo")
    root = next(line for line in mounts.stdout.splitlines() if line.split()[4] == "/")
    assert "nodev" in root.split()[5].split(","), root
    # /dev/sda's numbers: neither made nor opened, whether mknod or the open refuses.
    attempt = await run(driver, sandbox, "python3", "-c", """
import os, stat
try:
    os.mknod("/home/user/disk", stat.S_IFBLK | 0o666, os.makedev(8, 0))
except OSError as e:
    print("mknod", type(e).__name__)
try:
    os.close(os.open("/home/user/disk", os.O_RDONLY))
    print("opened")
except OSError as e:
    print("open", type(e).__name__)
""", user="root")
    assert "opened" not in attempt.stdout and attempt.stdout.strip(), attempt.stderr


async def test_kernel_knobs_are_read_only(driver: RuncDriver, sandbox: str) -> None:
    knobs = ["kernel/hostname", "kernel/core_pattern", "net/ipv4/ip_forward", "vm/drop_caches",
             "net/ipv4/ping_group_range", "user/max_user_namespaces"]
    written = await run(driver, sandbox, "sh", "-c", "; ".join(
        f"echo 1 > /proc/sys/{k} 2>/dev/null && echo {k} written" for k in knobs
    ) + "; echo done", user="root")
    assert written.stdout == "done\n"
