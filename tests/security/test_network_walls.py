"""Network walls: the host's services and the neighbour are out of reach, and no sandbox can
fill the host's connection tracking table (each has its own share, ``conntrack_limit``)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from sandlot.runtime import models
from sandlot.runtime.drivers.runc import RuncDriver
from tests import slot
from tests.internet import CONNECT, SERVE
from tests.runtime.conftest import SandboxFactory, run


@pytest.fixture
def host_service() -> Iterator[tuple[int, int]]:
    """Two TCP services on the host: one on loopback, one on every address."""
    servers = []
    for address in ("127.0.0.1", "0.0.0.0"):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, 0))
        s.listen()
        s.setblocking(False)
        servers.append(s)
    yield servers[0].getsockname()[1], servers[1].getsockname()[1]
    for s in servers:
        s.close()


async def test_host_services_are_unreachable(
    driver: RuncDriver, sandbox: str, host_service: tuple[int, int]
) -> None:
    loopback_port, any_port = host_service
    info = await driver.info(sandbox_id=sandbox)
    gateway = str(ipaddress.ip_address(info.address) - 1)
    host_addresses = {gateway, *_host_ipv4_addresses()}
    # Its own loopback is its own: the host's loopback service is simply not there.
    result = await run(driver, sandbox, "python3", "-c", CONNECT, "127.0.0.1", str(loopback_port))
    assert result.stdout.startswith("refused")
    for address in sorted(host_addresses):
        for port in (loopback_port, any_port):
            result = await run(driver, sandbox, "python3", "-c", CONNECT, address, str(port), "0.5")
            assert result.stdout.startswith("blocked"), (address, port, result.stdout)


def _host_ipv4_addresses() -> list[str]:
    """This host's own IPv4 addresses (packets to them never leave the machine)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " lo " not in line][:4]


async def test_sandboxes_cannot_reach_each_other(driver: RuncDriver, make_sandbox: SandboxFactory) -> None:
    a, b = await make_sandbox(), await make_sandbox(network=models.NetworkPolicy(internet=True))
    server = await driver.start(sandbox_id=b, process=models.ProcessSpec(["python3", "-c", SERVE, "8000"]))
    b_address = (await driver.info(sandbox_id=b)).address
    # B itself can use its server, so the server is really up...
    for _ in range(50):
        here = await run(driver, b, "python3", "-c", CONNECT, "127.0.0.1", "8000")
        if here.stdout.startswith("connected"):
            break
        await asyncio.sleep(0.1)
    assert here.stdout.startswith("connected hi")
    # ...but A reaches neither it nor B's init, though B has the internet on.
    for port in ("8000", "49983"):
        result = await run(driver, a, "python3", "-c", CONNECT, b_address, port, "0.5")
        assert result.stdout.startswith("blocked"), result.stdout
    await server.signal(9)
    await server.wait()


@contextlib.contextmanager
def _far_end() -> Iterator[str]:
    """A network namespace of this test, routed from the host, with a TCP service on port 80
    that answers ``hi``: somewhere a sandbox may be allowed to go, without leaving the machine.
    Its /30 is this test run's own (a benchmarking range, 198.18.0.0/15), so that test runs
    side by side do not meet."""
    ns, veth = f"sandlot-farend-{os.getpid()}", f"fe{os.getpid() % 10**8}"
    host, far = f"198.18.{slot.SLOT}.1", f"198.18.{slot.SLOT}.2"
    server = None
    try:
        for argv in (["netns", "add", ns], ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                     ["addr", "add", f"{host}/30", "dev", veth], ["link", "set", veth, "up"],
                     ["-n", ns, "addr", "add", f"{far}/30", "dev", "eth0"], ["-n", ns, "link", "set", "eth0", "up"],
                     ["-n", ns, "route", "add", "default", "via", host]):
            subprocess.run(["ip", *argv], check=True, capture_output=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", SERVE, "80"])
        yield far
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "delete", veth], capture_output=True)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


_FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(int(sys.argv[2])):
    s.sendto(b"x", (sys.argv[1], 1024 + port))
"""
"""One UDP datagram to each of N ports: N conntrack entries on the host, for 30 s each."""


def _udp_tracked_from(address: str) -> int:
    with open("/proc/net/nf_conntrack") as f:
        return sum(1 for line in f if line.split()[2] == "udp" and f" src={address} " in line)


async def test_a_sandbox_cannot_fill_the_hosts_conntrack_table(
    driver: RuncDriver, make_sandbox: SandboxFactory
) -> None:
    limit = driver.settings.conntrack_limit
    with _far_end() as far:
        policy = models.NetworkPolicy(internet=False, allow=(f"{far}/32",))
        a, b = await make_sandbox(network=policy), await make_sandbox(network=policy)
        connect = ("python3", "-c", CONNECT, far, "80", "1")
        for _ in range(30):  # the far end's server takes a moment to listen
            if (await run(driver, a, *connect)).stdout.startswith("connected hi"):
                break
            await asyncio.sleep(0.1)
        flood = await run(driver, a, "python3", "-c", _FLOOD, far, str(limit + 500))
        assert flood.exit.exit_code == 0, flood.stderr
        a_address = (await driver.info(sandbox_id=a)).address
        assert limit * 0.9 <= _udp_tracked_from(a_address) <= limit
        # A's share is used up: its next connection goes nowhere; B's share is whole.
        assert (await run(driver, a, *connect)).stdout.startswith("blocked")
        assert (await run(driver, b, *connect)).stdout.startswith("connected hi")
